"""The scheduler with fake runners and a fake clock: a Harness starts FakeRunners (which answer at once
and die when told), holds loads at a gate, fails or crashes them on demand, and moves the time keep-alives
count on. ModelSpecs of any size, without files: `spec("a", size=2)` is a 2 GB model."""

from __future__ import annotations

import asyncio
import itertools
import signal
from pathlib import Path
from typing import Any

from r1.daemon.config import Settings
from r1.daemon.kernels import ExtraBuffers, Machine
from r1.daemon.scheduler.model_spec import ModelSpec
from r1.daemon.scheduler.runner_client import RunnerDied
from r1.daemon.scheduler.scheduler import Scheduler

GB = 1024**3
_pids = itertools.count(1000)


class FakeRunner:
    """A loaded model that answers every call at once with its estimate as its memory; a test kills it."""

    def __init__(self, spec: ModelSpec, extra_buffers: bool) -> None:
        self.spec = spec
        self.pid = next(_pids)
        self.info: dict[str, Any] = {"rss": spec.estimate, "extra_buffers": extra_buffers}
        self.alive = True
        self.killed = False  # dying: it answers nothing, though nobody has seen it end yet
        self.death: str | None = None
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        if self.killed:
            self.die("was killed by SIGKILL")
            raise RunnerDied(f"the model runner for {self.spec.name} stopped", "was killed by SIGKILL", -9)
        return {"rss": self.spec.estimate}

    async def stop(self) -> None:
        self.die("exited with status 0")

    def die(self, how: str) -> None:
        self.alive = False
        self.death = how
        if not self.exited.done():
            self.exited.set_result(None)


class CrashBook(dict):
    """The store's memory of crashing kernels, in a dict."""

    def kernel_crash(self, engine: str, cpu: str) -> str | None:
        return self.get((engine, cpu))

    def record_kernel_crash(self, engine: str, cpu: str, reason: str) -> None:
        self[engine, cpu] = reason


MACHINE = Machine("llama-cpp-python 0.3.36", "Test Xeon (x86_64, flags 00000000)", frozenset({"avx2", "amx_int8"}))


class Harness:
    """A scheduler whose runners are fakes, whose loads can be held, and whose clock the test moves."""

    def __init__(self, book: CrashBook | None = None, **env: str) -> None:
        self.now = 0.0
        self.started: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail_next = False
        self.crash_with: int | None = None  # a signal that kills runners loading with extra buffers
        self.book = CrashBook() if book is None else book
        # No RAM tier of KV cells (test_kv_tiers.py counts it): these books are about the models alone.
        settings = Settings.from_env({"R1_HOME": "/tmp/r1-unused", "R1_SOCKET": "/tmp/r1-unused.sock",
                                      "R1_KV_CACHE_RAM": "0", **env})
        extra_buffers = ExtraBuffers(settings.llama_extra_buffers, MACHINE, self.book)
        self.scheduler = Scheduler(settings, extra_buffers, self.start, clock=lambda: self.now)

    async def start(self, spec: ModelSpec, extra_buffers: bool) -> FakeRunner:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError(f"{spec.name} would not load")
        self.started.append(f"{spec.name}{'' if extra_buffers else ' (safe)'}")
        if self.crash_with is not None and extra_buffers:
            death = f"was killed by {signal.Signals(self.crash_with).name}"
            raise RunnerDied(f"the model runner for {spec.name} stopped: {death}", death, -self.crash_with)
        return FakeRunner(spec, extra_buffers)

    async def __aenter__(self) -> Harness:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.scheduler.close()  # also when the test failed: no task left behind

    def loaded(self) -> list[str]:
        return sorted(i.spec.name for i in self.scheduler.instances())

    async def use(self, spec: ModelSpec, keep_alive: float | None = None) -> FakeRunner:
        async with self.scheduler.lease(spec, keep_alive) as lease:
            self.now += 1
            return lease.runner  # type: ignore[return-value]


def spec(name: str, size: float = 1, ctx: int = 2048, per_slot: float = 0) -> ModelSpec:
    return ModelSpec(name, f"id-{name}", f"weights-{name}", "gguf", Path(f"/m/{name}.gguf"), (("num_ctx", ctx),),
                     estimate=int(size * GB), per_slot=int(per_slot * GB))


async def settle() -> None:
    """Let every task that can make progress do so."""
    for _ in range(20):
        await asyncio.sleep(0)
