"""What a runner is started with (ModelSpec) and what a request leases (Lease): the scheduler's
vocabulary, shared with the routes that build specs and the generation code that uses a lease.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..gpu_fit import Layers


class RunnerHandle(Protocol):
    """What the scheduler needs of a runner (runner_client.Runner; a fake in unit tests)."""

    info: dict[str, Any]
    exited: asyncio.Future[None]  # done once the process is gone, whatever ended it

    @property
    def pid(self) -> int: ...

    @property
    def death(self) -> str | None: ...  # how it ended ("was killed by SIGKILL"), once it has

    @property
    def alive(self) -> bool: ...

    async def call(self, op: str, **fields: Any) -> dict[str, Any]: ...

    def generate(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class ModelSpec:
    """What a runner is started with; the same weights and load options mean the same instance."""

    name: str
    manifest_id: str
    weights: str  # Manifest.weights_id: `r1 create` variants of a model share it, and so share runners
    format: str
    path: Path  # a GGUF file (the first shard) or an MLX folder, inside the store's snapshot
    load: tuple[tuple[str, Any], ...]  # load options, sorted, so the spec is hashable
    # Bytes it will take (memory.estimate): with one slot, or with its slots once given them (with_slots).
    estimate: int = field(default=0, compare=False)
    per_slot: int = field(default=0, compare=False)  # bytes each further sequence slot adds
    kv_ram: int = field(default=0, compare=False)  # its runner's RAM tier of KV cells, counted in `estimate`
    layers: Layers | None = field(default=None, compare=False, hash=False)  # GGUF: its memory by layer, for gpu_fit
    device: int = field(default=0, compare=False)  # bytes planned on the GPU (placed()); `estimate` is the host's
    record: Any = field(default=None, compare=False, hash=False)  # the store's ModelRecord, for /api/ps

    @property
    def key(self) -> tuple[str, tuple[tuple[str, Any], ...]]:
        return self.weights, self.load

    @property
    def num_ctx(self) -> int:
        return dict(self.load).get("num_ctx", 0)

    @property
    def kv_cache_type(self) -> str:
        """Its KV cache's type (the load dict holds it where it is not f16: options/check.kv_cache_type)."""
        return dict(self.load).get("kv_cache_type", "f16")

    @property
    def slots(self) -> int:
        """Sequences its runner decodes together (with_slots puts them in the load dict)."""
        return dict(self.load).get("num_parallel", 1)

    @property
    def family(self) -> tuple[str, tuple[tuple[str, Any], ...]]:
        """Specs that differ only in num_ctx and slots: a runner of one can serve the others up to its context."""
        return self.weights, tuple(item for item in self.load if item[0] not in ("num_ctx", "num_parallel"))

    def with_slots(self, slots: int) -> ModelSpec:
        """The spec a runner is loaded with: `slots` sequences (its load dict's num_parallel), and their memory."""
        load = tuple(sorted({**dict(self.load), "num_parallel": slots}.items()))
        return dataclasses.replace(self, load=load, estimate=self.estimate + (slots - 1) * self.per_slot)


@dataclass
class Lease:
    runner: RunnerHandle
    load_duration: int  # ns this request waited for the model to load (0 when it was hot)
    num_ctx: int = 0  # the context its runner holds per sequence, maybe more than the request asked for


# Starts a runner for the spec; the flag turns llama.cpp's extra buffer types on or off.
StartRunner = Callable[[ModelSpec, bool], Awaitable[RunnerHandle]]
