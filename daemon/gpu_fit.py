"""How many of a GGUF model's layers a GPU holds: partial offload that fits.

llama.cpp offloads `n_gpu_layers` of a model's repeating layers, the last ones first (with
n_gpu_layers = 1 only blk.N-1 goes), and the output layer (output norm and matrix) only once every
repeating layer has: n_gpu_layers = block_count + 1 offloads everything. The token embeddings stay
on the host whatever the count. An offloaded layer takes its KV cache with it (offload_kqv), and a
device with any layer on it gets a compute buffer of its own; the host keeps its compute buffer.

`fit` counts layers from the last while they fit the device's free memory less a margin, and says
what goes where. It is pure, so the tests give it device sizes; the runner calls it with the free
memory llama.cpp reports (backends/devices.py) before it loads the model, and the scheduler calls it
with the devices an earlier runner reported, to book host and device memory apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MiB = 1024 * 1024
# Left free on the device: the driver's context, fragmentation, and what other programs start meanwhile
# (Ollama keeps a similar reserve per GPU).
MARGIN = 512 * MiB


@dataclass(frozen=True)
class Layers:
    """A model's memory by where llama.cpp can put it (memory.layers estimates it from the model's facts)."""

    weights: tuple[int, ...]  # bytes of each repeating layer, blk.0 first
    output: int  # the output layer on a device: its matrix (a copy of the token embeddings where they are tied)
    kv_per_layer: int  # one layer's KV cache for one slot (num_ctx x K and V width x the cache type's bytes)
    compute: int  # the compute buffer a device with any layer on it allocates
    host: int  # what stays on the host whatever is offloaded: token embeddings, runtime, its compute buffer

    def to_frame(self) -> dict[str, Any]:
        return {**asdict(self), "weights": list(self.weights)}

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Layers:
        return cls(**{**frame, "weights": tuple(frame["weights"])})


@dataclass(frozen=True)
class Split:
    """Where a runner's memory goes: `layers` is llama.cpp's n_gpu_layers (block_count + 1: all of them)."""

    layers: int
    total_layers: int
    host: int
    device: int

    def to_frame(self) -> dict[str, int]:
        return asdict(self)


def split(sizes: Layers, layers: int, slots: int = 1) -> Split:
    """What goes where with the last `layers` layers offloaded (the output layer as the block_count + 1st)."""
    count = len(sizes.weights)
    layers = max(0, min(layers, count + 1))
    repeating = min(layers, count)
    kv = sizes.kv_per_layer * slots
    moved = sum(sizes.weights[count - repeating:]) + repeating * kv  # leaves the host for the device
    # Only on the device: the output matrix (on the host it is the token embeddings' own tensor, or counted
    # in the layers' weights), and the device's compute buffer.
    added = (sizes.output if layers > count else 0) + (sizes.compute if layers else 0)
    return Split(layers, count + 1, sizes.host + sum(sizes.weights) + count * kv - moved, moved + added)


def fit(sizes: Layers, free: int, slots: int = 1, num_gpu: int | None = None, margin: int = MARGIN) -> Split:
    """The split for a device with `free` bytes free: as many layers, from the last, as fit it less `margin`;
    `num_gpu` (the option) chooses instead: 0 keeps all on the CPU, -1 offloads all, N offloads N."""
    count = len(sizes.weights)
    if num_gpu is not None:
        return split(sizes, count + 1 if num_gpu < 0 else num_gpu, slots)
    room = free - margin
    layers = 0
    while layers <= count and split(sizes, layers + 1, slots).device <= room:
        layers += 1
    return split(sizes, layers, slots)

