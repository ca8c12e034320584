"""Loaded models: one runner per (model, load options), shared by every request that needs it.

A request leases an instance: the first lease of a cold model starts its runner (once,
however many requests arrive together); requests to one instance take turns; when the
last lease ends, the keep-alive timer decides when the runner goes. No HTTP here: the
API asks for leases, and tests drive this with a fake runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings
from .runner.client import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What a runner is started with; the same spec means the same instance."""

    name: str
    manifest_id: str
    format: str
    path: Path  # a GGUF file (the first shard) or an MLX folder, inside the store's snapshot
    load: tuple[tuple[str, Any], ...]  # load options, sorted, so the spec is hashable

    @property
    def key(self) -> tuple[str, tuple[tuple[str, Any], ...]]:
        return self.manifest_id, self.load


@dataclass
class Instance:
    spec: ModelSpec
    runner: Runner
    loaded_at: float
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # one generation at a time per runner
    leases: int = 0
    expires_at: float | None = None  # wall-clock time of unloading; None: kept while in use or forever
    timer: asyncio.TimerHandle | None = None


@dataclass
class Lease:
    runner: Runner
    load_duration: int  # ns this request waited for the model to load (0 when it was hot)


StartRunner = Callable[[ModelSpec], Awaitable[Runner]]


async def start_runner(spec: ModelSpec) -> Runner:
    return await Runner.start(spec.name, spec.format, spec.path, dict(spec.load))


class Scheduler:
    def __init__(self, settings: Settings, start: StartRunner = start_runner) -> None:
        self.settings = settings
        self._start = start
        self._instances: dict[Any, Instance] = {}
        self._loading: dict[Any, asyncio.Future[Instance]] = {}

    def loaded(self) -> list[Instance]:
        return list(self._instances.values())

    @contextlib.asynccontextmanager
    async def lease(self, spec: ModelSpec, keep_alive: float | None = None) -> AsyncIterator[Lease]:
        """The model's runner, loaded, for the caller's turn; keep_alive (s) applies when it ends."""
        started = time.perf_counter_ns()
        instance = await self._instance(spec)
        load_duration = time.perf_counter_ns() - started
        instance.leases += 1
        self._cancel_timer(instance)
        try:
            async with instance.turn:
                yield Lease(instance.runner, load_duration)
        finally:
            instance.leases -= 1
            self._after_use(instance, self.settings.keep_alive if keep_alive is None else keep_alive)

    async def _instance(self, spec: ModelSpec) -> Instance:
        instance = self._instances.get(spec.key)
        if instance is not None and instance.runner.alive:
            return instance
        if instance is not None:
            await self._drop(instance)
        loading = self._loading.get(spec.key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(spec))
            self._loading[spec.key] = loading
            loading.add_done_callback(lambda _: self._loading.pop(spec.key, None))
        # Shielded: a client that gives up does not cancel a load others may be waiting for.
        return await asyncio.shield(loading)

    async def _load(self, spec: ModelSpec) -> Instance:
        runner = await self._start(spec)
        instance = Instance(spec, runner, time.time())
        self._instances[spec.key] = instance
        return instance

    def _cancel_timer(self, instance: Instance) -> None:
        if instance.timer is not None:
            instance.timer.cancel()
            instance.timer = None
        instance.expires_at = None

    def _after_use(self, instance: Instance, keep_alive: float) -> None:
        if not instance.runner.alive:
            asyncio.ensure_future(self._drop(instance))
            return
        if instance.leases:
            return
        if keep_alive == 0:
            asyncio.ensure_future(self._drop(instance))
        elif keep_alive > 0:
            instance.expires_at = time.time() + keep_alive
            instance.timer = asyncio.get_running_loop().call_later(keep_alive, self._expire, instance)

    def _expire(self, instance: Instance) -> None:
        instance.timer = None
        if instance.leases == 0:
            log.info("unloading %s: idle for its keep-alive", instance.spec.name)
            asyncio.ensure_future(self._drop(instance))

    async def _drop(self, instance: Instance) -> None:
        if self._instances.get(instance.spec.key) is instance:
            del self._instances[instance.spec.key]
        self._cancel_timer(instance)
        await instance.runner.stop()

    async def unload(self, manifest_id: str) -> int:
        """Unload every idle instance of a model now; the number unloaded."""
        idle = [i for i in self._instances.values() if i.spec.manifest_id == manifest_id and i.leases == 0]
        await asyncio.gather(*(self._drop(i) for i in idle))
        return len(idle)

    async def close(self) -> None:
        for loading in list(self._loading.values()):
            loading.cancel()
        await asyncio.gather(*(self._drop(i) for i in list(self._instances.values())), return_exceptions=True)
