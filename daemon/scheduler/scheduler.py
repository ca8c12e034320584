"""Loaded models: one runner per (model, load options), shared by every request that needs it,
within a memory budget. A runner with a larger context serves requests for a smaller one (the
runner holds each request to its own num_ctx), and one loaded for a larger context replaces
those with smaller ones, as Ollama reloads: one `ps` row per model and load options.

A request leases an instance. The first lease of a cold model loads it once, however many
requests arrive together; if it does not fit the budget, idle models are unloaded least
recently used first; if it still cannot fit until requests in flight finish, the request
waits (at most R1_MAX_QUEUE wait); if it can never fit, it fails at once. Each instance gets
R1_NUM_PARALLEL sequence slots, or fewer where the KV cache of all of them would not fit the
budget; its runner decodes that many requests together, and more wait for a slot in arrival
order. When an instance's last lease ends, its keep-alive decides when it goes. No HTTP here:
the API asks for leases, and tests drive this with a fake runner and a fake clock.

Loading a GGUF model also picks llama.cpp's kernels (kernels.ExtraBuffers): a runner that
crashes while loading with the extra buffer types on is started once more without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import R1Error, ServiceUnavailable
from ..gpu_fit import fit
from ..kernels import ExtraBuffers
from ..memory import human, slots_that_fit
from ..template_limits import TemplateLimits
from .model_spec import Lease, ModelSpec, RunnerHandle, StartRunner
from .runner_client import Runner, RunnerDied

log = logging.getLogger(__name__)

MEASURE_AFTER = 0.2  # s after a request ends to re-read a runner's size: buffers grow on first use
PING_TIMEOUT = 5.0  # s an idle runner has to answer a ping before a request is sent to it


class ModelTooLarge(R1Error):
    status = 507


class Busy(ServiceUnavailable):
    pass


@dataclass(eq=False)
class Instance:
    spec: ModelSpec  # with its slots (ModelSpec.with_slots)
    memory: int  # host bytes: the estimate until the runner is up, then its measured size
    device: int = 0  # GPU bytes: as planned until the runner is up, then as its load reported
    turn: asyncio.Semaphore = field(init=False)  # one unit per slot
    busy: int = 0  # slots serving a request now
    loaded: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    runner: RunnerHandle | None = None
    leases: int = 0  # requests holding or waiting for it; a leased instance is never unloaded
    last_used: float = 0.0  # scheduler clock
    keep_alive: float = 0.0  # seconds, from the last request to end; negative: forever
    expires: float | None = None  # scheduler clock; None while leased, or kept forever
    stopping: bool = False  # unload as soon as the last lease ends
    load_task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.turn = asyncio.Semaphore(self.slots)

    @property
    def slots(self) -> int:
        """Requests its runner serves at once."""
        return self.spec.slots

    @property
    def ready(self) -> bool:
        return self.runner is not None


async def start_runner(spec: ModelSpec, extra_buffers: bool, log_level: str, threads: int = 0,
                       templates: TemplateLimits | None = None, kv_cache: dict[str, Any] | None = None,
                       lookup_drafts: int | None = None) -> Runner:
    """A runner process for the spec; `threads` (R1_NUM_THREAD) stands in where the spec sets no num_thread;
    its chat templates render within `templates` (R1_TEMPLATE_*); `kv_cache` (R1_KV_CACHE_*): where the prompt
    cache lives (a folder per weights under its root) and its sizes, the RAM tier's being the spec's;
    `lookup_drafts` (R1_LOOKUP_DRAFTS): tokens a GGUF runner guesses ahead, where not the backend's default."""
    load = {**({"num_thread": threads} if threads else {}), **dict(spec.load), "extra_buffers": extra_buffers}
    if kv_cache and spec.format in ("gguf", "mlx"):  # MLX runners: the disk tier only (kv_ram is 0)
        load["kv_cache"] = {**kv_cache, "dir": str(Path(kv_cache["root"]) / spec.weights), "model": spec.weights,
                            "ram": spec.kv_ram}
    if lookup_drafts is not None and spec.format == "gguf":
        load["lookup_drafts"] = lookup_drafts
    if spec.layers is not None:  # the runner fits them to the GPU it finds (backends/devices.py)
        load["layers"] = spec.layers.to_frame()
    return await Runner.start(spec.name, spec.format, spec.path, load, log_level,
                              templates.to_frame() if templates else None)


def measured(info: dict[str, Any]) -> int:
    """A runner's size from its health report: resident memory plus what it holds outside it."""
    return int(info.get("rss", 0)) + int(info.get("unaccounted", 0))


def needs(spec: ModelSpec) -> str:
    """What a spec takes, as the messages about the budget say it: with its GPU share, where it has one."""
    if not spec.device:
        return human(spec.estimate)
    return f"{human(spec.estimate)} of host memory beside {human(spec.device)} on the GPU"


def on_device(info: dict[str, Any]) -> tuple[int, int | None]:
    """From a runner's load result: its bytes on the GPU, and the most free memory a GPU had before it loaded
    (None where it saw no GPU, or did not say)."""
    offload = info.get("offload") or {}
    free = [int(d["free"]) for d in offload.get("devices", [])]
    return int(offload.get("device", 0)), max(free, default=None)


class Scheduler:
    def __init__(self, settings: Settings, extra_buffers: ExtraBuffers, start: StartRunner | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = settings.memory_budget
        self.max_loaded = settings.max_loaded
        self.num_parallel = settings.num_parallel
        self.max_queue = settings.max_queue
        self.default_keep_alive = settings.keep_alive
        self.loads = 0  # runners started, for /metrics and tests
        self.evictions = 0
        self.extra_buffers = extra_buffers
        # Real runners log at the daemon's level.
        self.template_limits = TemplateLimits.from_settings(settings)
        self.kv_cache_ram = settings.kv_cache_ram
        kv_cache = {"root": str(settings.home / "kv"), "disk": settings.kv_cache_disk,
                    "min_tokens": settings.kv_cache_min_tokens}
        self._start = start or functools.partial(start_runner, log_level=settings.log_level,
                                                 threads=settings.num_thread, templates=self.template_limits,
                                                 kv_cache=kv_cache, lookup_drafts=settings.lookup_drafts)
        self._clock = clock
        self._instances: dict[Any, Instance] = {}
        self.gpu_free: int | None = None  # the largest GPU's free memory as the runners report it; None: no GPU seen
        self._waiting = 0  # requests waiting for memory or a turn
        self._changed = asyncio.Event()  # replaced each time it fires: memory or turns may be free
        self._reaper: asyncio.Task[None] | None = None
        self._reaper_wake = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()

    # What is loaded

    def instances(self) -> list[Instance]:
        return list(self._instances.values())

    @property
    def used(self) -> int:
        return sum(i.memory for i in self._instances.values())

    @property
    def device_used(self) -> int:
        return sum(i.device for i in self._instances.values())

    @property
    def waiting(self) -> int:
        return self._waiting

    def expires_at(self, instance: Instance) -> float | None:
        """Wall-clock time the instance unloads if nothing uses it; None: never."""
        if instance.keep_alive < 0 and not instance.stopping:
            return None
        left = instance.keep_alive if instance.expires is None else instance.expires - self._clock()
        return time.time() + max(left, 0.0)

    # Leases

    @contextlib.asynccontextmanager
    async def lease(self, spec: ModelSpec, keep_alive: float | None = None) -> AsyncIterator[Lease]:
        """The model's runner, loaded, for the caller's turn; keep_alive (s) applies when it ends."""
        started = time.perf_counter_ns()
        instance = await self._acquire(spec, keep_alive)
        try:
            load_duration = time.perf_counter_ns() - started
            await self._take_turn(instance)
            instance.busy += 1
            try:
                instance.last_used = self._clock()
                assert instance.runner is not None
                yield Lease(instance.runner, load_duration, instance.spec.num_ctx)
            finally:
                instance.busy -= 1
                instance.turn.release()
        finally:
            instance.leases -= 1
            self._leave(instance, keep_alive)

    def _leave(self, instance: Instance, keep_alive: float | None) -> None:
        """A request is done with the instance: its keep-alive applies from now."""
        instance.last_used = self._clock()
        instance.keep_alive = self.default_keep_alive if keep_alive is None else keep_alive
        self._released(instance)

    async def _acquire(self, spec: ModelSpec, keep_alive: float | None) -> Instance:
        """The instance for `spec`, leased (leases + 1) and loaded. A request that stops waiting for the load
        (its client left) lets it go on for the others; with no others, the model idles out once loaded."""
        waiting = False
        try:
            while True:
                instance = self._find(spec)
                if instance is not None:
                    if instance.ready and not await self._answers(instance):
                        await self._unload(instance, "its runner no longer answers")
                        continue
                    if self._instances.get(instance.spec.key) is not instance:
                        continue  # unloaded while its runner was being pinged (keep-alive, r1 stop)
                    instance.leases += 1
                    instance.stopping = False  # asked for again: it stays
                    self._set_expiry(instance, None)
                    try:
                        await asyncio.shield(instance.loaded)
                    except BaseException:
                        instance.leases -= 1
                        if not instance.leases and not instance.loaded.done():
                            # The loop ends here (raise below): `instance` is the one this callback means.
                            instance.loaded.add_done_callback(lambda _: self._leave(instance, keep_alive))  # noqa: B023
                        raise
                    return instance
                placed = self.placed(spec)
                if placed.estimate > self.budget:
                    raise ModelTooLarge(
                        f"{spec.name} needs {needs(placed)} (num_ctx {spec.num_ctx}) but the memory budget is "
                        f"{human(self.budget)}; choose a smaller quantization or num_ctx, or raise R1_MEMORY_BUDGET"
                    )
                narrower = [i for i in self._instances.values()
                            if i.spec.family == spec.family and i.spec.num_ctx < spec.num_ctx]
                sized = self._with_host_cache(self.placed(spec.with_slots(self.slots_for(spec))))
                evicted = self._make_room(sized.estimate, [i for i in narrower if i.ready and i.leases == 0])
                if evicted is not None:
                    for old in narrower:  # busy ones go when their requests end
                        old.stopping = True
                    self._begin_load(sized, evicted)
                    continue
                if not waiting:
                    self._enter_queue()
                    waiting = True
                    log.info("%s waits for memory: %s of %s in use by models serving requests",
                             spec.name, human(self.used), human(self.budget))
                await self._changed.wait()
        finally:
            if waiting:
                self._waiting -= 1

    def _find(self, spec: ModelSpec) -> Instance | None:
        """The instance to serve `spec`: the one with the largest context of its family, if that is
        large enough. One on its way out (replaced, `r1 stop`) serves only when nothing else can."""
        family = [i for i in self._instances.values() if i.spec.family == spec.family and i.spec.num_ctx >= spec.num_ctx]
        return max(family, key=lambda i: (not i.stopping, i.spec.num_ctx), default=None)

    async def _answers(self, instance: Instance) -> bool:
        """Whether a loaded instance's runner is there to take a request. An idle one is pinged: one
        killed a moment ago (the OOM killer, an administrator) may not have been reaped yet, and a
        request sent to it would fail; a dying process answers nothing."""
        runner = instance.runner
        assert runner is not None
        dead = not runner.alive
        if not dead and not instance.leases:  # busy ones are serving requests this very moment
            try:
                await asyncio.wait_for(runner.call("ping"), PING_TIMEOUT)
            except TimeoutError:
                pass  # slow to answer is still alive
            except RunnerDied:
                dead = True
        if dead:
            log.warning("the runner for %s %s; starting a new one", instance.spec.name, runner.death or "has stopped")
        return not dead

    def host_cache(self, fmt: str, estimate: int) -> int:
        """The RAM tier a runner of this format and estimate gets: R1_KV_CACHE_RAM, at most an eighth of the
        budget (so a small budget still holds several models), and no more than the budget holds beside the
        model (none at all where the model fills it): a tier never keeps a model out."""
        return max(0, min(self.kv_cache_ram, self.budget // 8, self.budget - estimate)) if fmt == "gguf" else 0

    def _with_host_cache(self, spec: ModelSpec) -> ModelSpec:
        ram = self.host_cache(spec.format, spec.estimate)
        return dataclasses.replace(spec, estimate=spec.estimate + ram, kv_ram=ram)

    def placed(self, spec: ModelSpec) -> ModelSpec:
        """The spec with its memory split as its runner will split it (gpu_fit.fit) on the largest GPU, with what
        the models loaded there leave free: `estimate` the host's share, `device` the GPU's. Unchanged before
        a runner has reported a GPU, and for MLX models (no layers to split)."""
        if spec.layers is None or self.gpu_free is None:
            return spec
        whole = fit(spec.layers, 0, spec.slots, num_gpu=0)  # all of it on the host
        split = fit(spec.layers, self.gpu_free, spec.slots, dict(spec.load).get("num_gpu"))
        return dataclasses.replace(spec, estimate=spec.estimate - (whole.host - split.host), device=split.device)

    def slots_for(self, spec: ModelSpec) -> int:
        """Sequence slots a runner for `spec` gets: R1_NUM_PARALLEL, or as many as the budget holds."""
        return slots_that_fit(spec.estimate, spec.per_slot, self.budget, self.num_parallel)

    def _enter_queue(self) -> None:
        if self._waiting >= self.max_queue:
            raise Busy(f"r1 is busy: {self._waiting} requests are already waiting (R1_MAX_QUEUE); try again shortly")
        self._waiting += 1

    async def _take_turn(self, instance: Instance) -> None:
        if not instance.turn.locked():
            await instance.turn.acquire()
            return
        self._enter_queue()
        try:
            await instance.turn.acquire()  # asyncio semaphores wake waiters in arrival order
        finally:
            self._waiting -= 1

    def _fits(self, need: int, freed: int = 0, unloaded: int = 0) -> bool:
        count_ok = not self.max_loaded or len(self._instances) - unloaded < self.max_loaded
        return self.used - freed + need <= self.budget and count_ok

    def _make_room(self, need: int, replaced: list[Instance]) -> list[Instance] | None:
        """Idle instances to unload so that `need` fits: the `replaced` ones, then the least recently
        used; None if it cannot fit yet."""
        idle = replaced + sorted((i for i in self._instances.values() if i.ready and i.leases == 0 and i not in replaced),
                                 key=lambda i: i.last_used)
        chosen: list[Instance] = replaced[:]
        freed = sum(i.memory for i in replaced)
        while not self._fits(need, freed, len(chosen)):
            if len(chosen) == len(idle):
                return None
            chosen.append(idle[len(chosen)])
            freed += chosen[-1].memory
        return chosen

    def _begin_load(self, spec: ModelSpec, evicted: list[Instance]) -> None:
        slots = spec.slots
        if slots < self.num_parallel:
            log.info("%s gets %d sequence slots of R1_NUM_PARALLEL's %d: the KV cache of each takes %s at num_ctx %d, "
                     "and %d slots would need %s of the %s budget", spec.name, slots, self.num_parallel,
                     human(spec.per_slot), spec.num_ctx, slots + 1, human(spec.estimate + spec.per_slot),
                     human(self.budget))
        instance = Instance(spec, spec.estimate, spec.device)
        self._instances[spec.key] = instance
        self._book_device(spec.device)
        stops = []
        for old in evicted:
            if old.spec.family == spec.family:
                stops.append(self._unload(old, f"replaced by a runner with num_ctx {spec.num_ctx}"))
            else:
                self.evictions += 1
                stops.append(self._unload(old, f"idle, least recently used, to make room for {spec.name}"))
        instance.load_task = asyncio.ensure_future(self._load(instance, stops))

    async def _load(self, instance: Instance, stops: Sequence[Awaitable[None]]) -> None:
        try:
            await asyncio.gather(*stops)  # the memory is free only once those processes are gone
            instance.runner = await self._start_runner(instance.spec)
            self.loads += 1
            instance.memory = measured(instance.runner.info) or instance.memory
            self._book_device(-instance.device)
            instance.device, free = on_device(instance.runner.info)
            if free is not None:  # what the GPU holds is known again, as of this load
                self.gpu_free = free
            self._book_device(instance.device)
            instance.runner.exited.add_done_callback(lambda _: self._exited(instance))
            log.info("%s loaded: %s measured, %s estimated, %d sequence slots%s", instance.spec.name,
                     human(instance.memory), human(instance.spec.estimate), instance.slots,
                     f", {human(instance.device)} on the GPU" if instance.device else "")
            instance.loaded.set_result(None)
        except BaseException as exc:
            if self._instances.get(instance.spec.key) is instance:
                del self._instances[instance.spec.key]
                self._book_device(-instance.device)
            instance.loaded.set_exception(exc)
            instance.loaded.exception()  # retrieved: waiters get it; nobody waiting is fine too
            self._notify()

    async def _start_runner(self, spec: ModelSpec) -> RunnerHandle:
        """A loaded runner; one that crashed loading with extra buffers gets one more try without them."""
        extra_buffers = self.extra_buffers.use_for(spec.format)
        try:
            return await self._start(spec, extra_buffers)
        except RunnerDied as exc:
            if not self.extra_buffers.falls_back(extra_buffers, exc.returncode):
                raise
            crash = exc
        log.info("%s: its runner %s while loading; loading it again without extra buffers", spec.name, crash.death)
        runner = await self._start(spec, False)
        await self.extra_buffers.remember(spec.name, crash.death)
        return runner

    def _exited(self, instance: Instance) -> None:
        """A runner that dies between requests (the OOM killer, an administrator) leaves the books at once."""
        if self._instances.get(instance.spec.key) is not instance or instance.leases:
            return  # unloaded on purpose, or its requests fail and the last one's release unloads it
        assert instance.runner is not None
        log.warning("the runner for %s %s while idle; the next request starts a new one",
                    instance.spec.name, instance.runner.death or "exited")
        self._spawn(self._unload(instance, "its runner exited"))

    def _released(self, instance: Instance) -> None:
        self._notify()
        if instance.runner is None or self._instances.get(instance.spec.key) is not instance:
            return
        if not instance.runner.alive:
            self._spawn(self._unload(instance, "its runner exited"))
            return
        if instance.leases:
            return
        self._spawn(self._measure(instance))
        if instance.stopping or instance.keep_alive == 0:
            self._spawn(self._unload(instance, "asked to stop" if instance.stopping else "keep_alive 0"))
        elif instance.keep_alive > 0:
            self._set_expiry(instance, self._clock() + instance.keep_alive)

    async def _measure(self, instance: Instance) -> None:
        await asyncio.sleep(MEASURE_AFTER)
        if instance.runner is not None and instance.runner.alive:
            with contextlib.suppress(R1Error, ConnectionError):
                health = await instance.runner.call("health")
                instance.memory = measured(health) or instance.memory
                instance.runner.info.update({k: v for k, v in health.items() if k.startswith("kv_")})  # for r1 ps

    # Unloading

    def _set_expiry(self, instance: Instance, when: float | None) -> None:
        instance.expires = when
        if when is not None:
            if self._reaper is None or self._reaper.done():
                self._reaper = asyncio.ensure_future(self._reap_forever())
            self._reaper_wake.set()

    async def reap(self) -> int:
        """Unload idle instances whose keep-alive has run out; how many."""
        now = self._clock()
        expired = [i for i in self._instances.values()
                   if i.leases == 0 and i.expires is not None and i.expires <= now]
        await asyncio.gather(*(self._unload(i, "idle for its keep-alive") for i in expired))
        return len(expired)

    async def _reap_forever(self) -> None:
        while True:
            deadlines = [i.expires for i in self._instances.values() if i.expires is not None and i.leases == 0]
            if not deadlines:
                self._reaper = None
                return
            self._reaper_wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._reaper_wake.wait(), max(min(deadlines) - self._clock(), 0.0))
            await self.reap()

    async def _unload(self, instance: Instance, why: str) -> None:
        log.info("unloading %s: %s", instance.spec.name, why)
        if self._instances.get(instance.spec.key) is instance:
            del self._instances[instance.spec.key]
            self._book_device(-instance.device)
        instance.expires = None
        if instance.runner is not None:
            await instance.runner.stop()
        self._notify()

    async def stop(self, weights: str) -> int:
        """Unload the instances running these weights: idle ones now, busy ones when their requests end. How many."""
        found = [i for i in self._instances.values() if i.spec.weights == weights]
        for instance in found:
            instance.stopping = True
        await asyncio.gather(*(self._unload(i, "asked to stop") for i in found if i.leases == 0 and i.ready))
        return len(found)

    def _book_device(self, size: int) -> None:
        """`size` more bytes taken on the GPU (fewer, where negative), until a runner's load reports it again."""
        if self.gpu_free is not None:
            self.gpu_free -= size

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Stop every runner: loads under way are cancelled (they clean up), unloads finish."""
        if self._reaper is not None:
            self._reaper.cancel()
        loads = [i.load_task for i in self._instances.values() if i.load_task is not None and not i.load_task.done()]
        for task in loads:
            task.cancel()
        await asyncio.gather(*loads, *self._background, return_exceptions=True)
        await asyncio.gather(*(self._unload(i, "the daemon is stopping") for i in list(self._instances.values())),
                             return_exceptions=True)
