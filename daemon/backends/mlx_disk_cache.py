"""The MLX prompt cache on disk: a prompt's KV cache, saved once evaluated, serves a later prompt that
starts with it after an unload or a restart (the GGUF runner's disk tier, kv_tiers.py, for mlx-lm).

Files live beside the GGUF tier's (kv_files.py: one folder per weights under $R1_HOME/kv, one cap, least
recently used out first, written by the same background thread), named "mlx-<hash>.kv". Their state is
laid out here rather than by mlx-lm's save_prompt_cache, whose safetensors reader (mx.load) trusts the
file's own offsets and rebuilds any cache class the file names:

    the layout's length (4 bytes, little-endian), the layout (JSON: each layer's cache class and the
    leaves of its `state`, an array's dtype and shape or a number), then the arrays' bytes, in order.

Only the cache classes this model's own fresh cache has, at the same layers, are accepted; the arrays'
sizes must add up to the bytes that follow the layout exactly, and each layer must hold the saved
tokens. Anything else is ValueError: the file is removed, never loaded (kv_files checks the identity,
the size and the checksum before this).
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx_lm
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten
from mlx_lm.models import cache as mlx_cache
from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

from .base import shared_prefix
from .kv_files import DiskTier

log = logging.getLogger("r1.kv")

LAYOUT = 1  # bump when the layout below changes: older files then fail the identity check
PREFIX = "mlx-"
# dtype name -> (the MLX dtype, the numpy dtype its bytes are read as: bfloat16 has none, so as uint16)
DTYPES = {
    "float32": (mx.float32, np.float32), "float16": (mx.float16, np.float16), "bfloat16": (mx.bfloat16, np.uint16),
    "int32": (mx.int32, np.int32), "uint32": (mx.uint32, np.uint32), "int8": (mx.int8, np.int8),
    "uint8": (mx.uint8, np.uint8),
}
Cache = list[Any]  # mlx-lm's per-layer cache objects


def identity(model: str) -> dict[str, Any]:
    """What a saved cache must have been made with to be loaded here."""
    mlx_version = mx.__version__  # type: ignore[attr-defined]  # mlx.core's stubs leave it out
    return {"model": model, "format": "mlx", "mlx": mlx_version, "mlx_lm": mlx_lm.__version__, "layout": LAYOUT}


def _dtype_name(dtype: mx.Dtype) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def dump(cache: Cache) -> bytes:
    """The cache's state as bytes (copied out of MLX here; hashed and written in the background)."""
    leaves, chunks = [], []
    states: list[tuple[str, Any]] = []  # tree_flatten fills it: a list of pairs, where its return type is a union
    tree_flatten([layer.state for layer in cache], destination=states)
    for path, leaf in states:
        if isinstance(leaf, mx.array):
            name = _dtype_name(leaf.dtype)
            if name not in DTYPES:
                raise ValueError(f"an MLX cache of {name} cannot be saved")
            data = np.array(leaf.view(mx.uint16) if name == "bfloat16" else leaf)  # numpy has no bfloat16
            leaves.append([path, {"dtype": name, "shape": list(leaf.shape)}])
            chunks.append(data.tobytes())
        elif leaf is None or isinstance(leaf, (bool, int, float)):
            leaves.append([path, {"value": leaf}])
        else:
            raise ValueError(f"an MLX cache holding {type(leaf).__name__} cannot be saved")
    layout = json.dumps({"classes": [type(layer).__name__ for layer in cache], "leaves": leaves}).encode()
    return struct.pack("<I", len(layout)) + layout + b"".join(chunks)


def load(state: bytes, expected: list[str], tokens: int) -> Cache:
    """The cache in `state`, whose layers must be of the `expected` classes and hold `tokens` tokens each."""
    if len(state) < 4:
        raise ValueError("it holds no layout")
    (length,) = struct.unpack("<I", state[:4])
    if length > len(state) - 4:
        raise ValueError("its layout runs past its end")
    layout = json.loads(state[4:4 + length])
    if not isinstance(layout, dict) or layout.get("classes") != expected:
        raise ValueError("its layers are not this model's")
    position = 4 + length
    flat: list[tuple[str, Any]] = []
    for path, leaf in layout.get("leaves", []):
        if "value" in leaf:
            value = leaf["value"]
            if value is not None and not isinstance(value, (bool, int, float)):
                raise ValueError("it holds a value that is not a number")
            flat.append((str(path), value))
            continue
        mx_type, np_type = DTYPES[leaf["dtype"]]
        shape = [int(n) for n in leaf["shape"]]
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(np_type).itemsize
        if min(shape, default=0) < 0 or position + size > len(state):
            raise ValueError("its arrays run past its end")
        array = mx.array(np.frombuffer(state, np_type, size // np.dtype(np_type).itemsize, position).reshape(shape))
        flat.append((str(path), array.view(mx_type) if leaf["dtype"] == "bfloat16" else array))
        position += size
    if position != len(state):
        raise ValueError(f"{len(state) - position} bytes follow its arrays")
    states = tree_unflatten(flat) if flat else []
    if not isinstance(states, list) or len(states) != len(expected):
        raise ValueError("it holds another number of layers")
    cache = [getattr(mlx_cache, name).from_state(s) for name, s in zip(expected, states)]
    if any(layer.size() not in (tokens, getattr(layer, "max_size", -1)) for layer in cache):
        raise ValueError("its layers hold other tokens than its header's")
    for layer in cache:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if isinstance(keys, mx.array) and not (
                isinstance(values, mx.array) and keys.ndim == values.ndim == 4 and keys.shape[0] == 1
                and keys.shape[:3] == values.shape[:3] and keys.shape[2] >= layer.size()):
            raise ValueError("its keys and values are not one sequence's cells")
    return cache


class MlxDiskCache:
    """One MLX runner's saved prompts: save after evaluation, load the longest one a prompt continues."""

    def __init__(self, disk: DiskTier, min_tokens: int) -> None:
        self.disk, self.min_tokens = disk, max(1, min_tokens)
        self.hits = 0

    def wants(self, tokens: list[int]) -> bool:
        return len(tokens) >= self.min_tokens and not self.disk.has(tuple(tokens))

    def save(self, tokens: list[int], cache: Cache) -> None:
        try:
            state = dump(cache)
        except ValueError as exc:  # a cache type this layout does not know: not saved, still served
            log.info("not saving an MLX prompt cache: %s", exc)
            return
        self.disk.save(tuple(tokens), state)

    def load(self, model: Any, prompt: list[int], longest: int) -> tuple[Cache, int] | None:
        """The saved cache sharing the most (more than `longest`, and at least min_tokens: fewer cost little to
        evaluate) with the prompt, cut to what it shares, and that count; at least the prompt's last token is
        left to evaluate (its logits sample first)."""
        limit, longest = len(prompt) - 1, max(longest, self.min_tokens - 1)
        expected = [type(layer).__name__ for layer in make_prompt_cache(model)]
        for entry in self.disk.find(prompt, longest):
            shared = min(shared_prefix(entry.tokens, prompt), limit)
            if shared <= longest:
                continue
            state = self.disk.read(entry)
            if state is None:
                continue
            assert entry.path is not None
            try:
                cache = load(state, expected, len(entry.tokens))
            except (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError) as exc:
                self.disk.remove(entry.path, f"it is not a prompt cache of this MLX model ({exc})")
                continue
            if shared < len(entry.tokens):
                if not can_trim_prompt_cache(cache):  # a sliding window that has wrapped
                    continue
                trim_prompt_cache(cache, len(entry.tokens) - shared)
            self.hits += 1
            return cache, shared
        return None

    def memory(self) -> dict[str, int]:
        """As kv_tiers.Tiers reports it (r1 ps): MLX runners keep no RAM tier."""
        with self.disk.lock:  # the writer thread adds entries meanwhile
            held = sum(e.size for e in self.disk.entries.values())
        return {"kv_ram": 0, "kv_ram_cap": 0, "kv_disk": held, "kv_disk_cap": self.disk.cap}


def disk_cache_for(config: dict[str, Any] | None) -> MlxDiskCache | None:
    """The disk tier the runner's load options ask for (scheduler.start_runner puts them there), or None."""
    if not config or not config.get("disk"):
        return None
    try:
        disk = DiskTier(Path(config["dir"]), identity(config["model"]), int(config["disk"]), prefix=PREFIX)
    except OSError as exc:  # a read-only or full R1_HOME costs the cache, never the model
        log.warning("no prompt cache on disk for this model: %s", exc)
        return None
    return MlxDiskCache(disk, int(config.get("min_tokens", 1024)))
