"""KV cache tiers under a llama.cpp context's slots: host RAM, and the prompt cache on disk (kv_files.py).

The Batcher (llama_batch.py) calls four hooks:

    room       while a prompt is evaluated, its last token waits for a step of its own once the rest is in
    evaluated  after each decode: a prompt whose all-but-last tokens are in is saved to disk (its state copied
               out here, written in the background)
    evicting   before a free slot's cells are overwritten by another conversation: they go to RAM first
    recall     before a sequence starts in a slot: the longest saved prefix that shares more with its
               prompt than the slot does is restored into the slot (llama_state_seq_set_data)

Why all but the last token: that token's logits give the first sample, so a prompt is never taken whole
from a cache (llama_batch.py keeps at least one token to evaluate), and a state cannot be cut back on a
model with sliding-window layers (Gemma 3): llama.cpp saves only the window's cells of those layers, the
ones the next position needs. A prefix saved one token short is therefore what a repeated prompt, or
the next turn of a chat, can continue. On such models only prefixes the new prompt holds whole are
restored; on the others a longer prefix is restored and cut back to what is shared.

Any prompt may be saved, whatever its sampling or grammar: cells depend on the tokens only.
"""

from __future__ import annotations

import ctypes
import logging
import time
from pathlib import Path
from typing import Any, Protocol

import llama_cpp

from .base import shared_prefix
from .kv_files import DiskTier, Entry

LIB = llama_cpp.llama_cpp
log = logging.getLogger("r1.kv")


class Slot(Protocol):
    """What the tiers read of llama_batch.Slot (which imports this module)."""

    index: int
    cached: list[int]
    sequence: Any  # llama_batch.Sequence: prompt, todo


class Batcher(Protocol):
    memory: Any
    cells: int
    n_swa: int

    def can_cut(self, index: int, keep: int) -> bool: ...


def identity(model: str) -> dict[str, Any]:
    """What a saved state must have been made with to be loaded here."""
    return {"model": model, "llama_cpp_python": llama_cpp.__version__, "state": LIB.LLAMA_STATE_SEQ_VERSION}


class RamTier:
    """Slots' cells kept in host RAM, within `cap` bytes, least recently used out first."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.entries: list[Entry] = []

    @property
    def used(self) -> int:
        return sum(e.size for e in self.entries)

    def put(self, tokens: tuple[int, ...], state: bytes) -> None:
        self.entries = [e for e in self.entries if e.tokens != tokens]
        if len(state) > self.cap:
            return
        while self.used + len(state) > self.cap:
            self.entries.remove(min(self.entries, key=lambda e: e.used))
        self.entries.append(Entry(tokens, len(state), time.monotonic(), state=state))


class Tiers:
    """The tiers of one Batcher. `disk` None or `ram_cap` 0 turns that tier off."""

    def __init__(self, ctx: Any, disk: DiskTier | None, ram_cap: int, min_tokens: int) -> None:
        self.ctx, self.disk, self.min_tokens = ctx, disk, max(1, min_tokens)
        self.ram = RamTier(ram_cap) if ram_cap > 0 else None
        self.hits = {"ram": 0, "disk": 0}

    def room(self, slot: Slot, room: int) -> int:
        """Prompt tokens this slot may evaluate in this step: it stops one short of its prompt's end once."""
        sequence = slot.sequence
        assert sequence is not None
        checkpoint = len(sequence.prompt) - 1
        if self.disk is None or checkpoint < self.min_tokens or len(slot.cached) >= checkpoint:
            return room
        return min(room, checkpoint - len(slot.cached))

    def evaluated(self, slots: list[Slot]) -> None:
        for slot in slots:
            sequence = slot.sequence
            if (self.disk is None or sequence is None or not sequence.todo
                    or len(slot.cached) != len(sequence.prompt) - 1 or len(slot.cached) < self.min_tokens):
                continue
            tokens = tuple(slot.cached)
            if not self.disk.has(tokens):
                self.disk.save(tokens, self._state(slot.index))

    def evicting(self, slot: Slot, keep: int) -> None:
        """The slot's cells past `keep` are about to be overwritten: to RAM, if there are enough of them."""
        if self.ram is not None and len(slot.cached) - keep >= self.min_tokens:
            self.ram.put(tuple(slot.cached), self._state(slot.index))

    def recall(self, batcher: Batcher, slot: Slot, prompt: list[int], keep: int) -> int:
        """Restore into `slot` (holding `keep` tokens of `prompt`) the saved prefix that shares the most
        with the prompt, if that is more; the tokens the slot then holds of the prompt."""
        limit = len(prompt) - 1
        for entry in self._candidates(batcher, prompt, keep):
            state = entry.state if entry.state is not None else self.disk.read(entry) if self.disk else None
            if state is None:
                continue
            buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
            LIB.llama_memory_seq_rm(batcher.memory, slot.index, -1, -1)
            slot.cached = []
            keep = 0  # the slot's own cells are gone now, whatever follows
            # llama.cpp checks the layers and types it reads; that the cells end where the tokens do, we check.
            if (not LIB.llama_state_seq_set_data(self.ctx, buffer, len(state), slot.index)
                    or LIB.llama_memory_seq_pos_max(batcher.memory, slot.index) != len(entry.tokens) - 1):
                self._drop(entry, "llama.cpp refused its state, or it holds other cells than its tokens'")
                LIB.llama_memory_seq_rm(batcher.memory, slot.index, -1, -1)
                continue
            shared = min(shared_prefix(entry.tokens, prompt), limit)
            slot.cached = list(entry.tokens)
            if shared < len(slot.cached) and not (batcher.can_cut(slot.index, shared)
                                                   and LIB.llama_memory_seq_rm(batcher.memory, slot.index, shared, -1)):
                LIB.llama_memory_seq_rm(batcher.memory, slot.index, -1, -1)
                slot.cached = []
                continue
            del slot.cached[shared:]
            entry.used = time.monotonic() if entry.state is not None else entry.used
            self.hits["ram" if entry.state is not None else "disk"] += 1
            return shared
        return keep

    def _candidates(self, batcher: Batcher, prompt: list[int], keep: int) -> list[Entry]:
        """Saved prefixes worth restoring, the most shared first; RAM before disk where they share as much.
        With sliding-window layers, only those the prompt holds whole, short of its last token (see above)."""
        entries = list(self.ram.entries) if self.ram is not None else []
        entries += self.disk.find(prompt, keep) if self.disk is not None else []
        limit = len(prompt) - 1

        def usable(entry: Entry) -> int:
            shared = min(shared_prefix(entry.tokens, prompt), limit)
            if len(entry.tokens) > batcher.cells or (batcher.n_swa > 0 and shared < len(entry.tokens)):
                return 0
            return shared

        # A saved prefix sharing fewer than min_tokens with the prompt costs more to restore than to evaluate.
        floor = max(keep + 1, self.min_tokens)
        return sorted((e for e in entries if usable(e) >= floor), key=lambda e: (-usable(e), e.state is None))

    def _drop(self, entry: Entry, why: str) -> None:
        if entry.path is not None and self.disk is not None:
            self.disk.remove(entry.path, why)
        elif self.ram is not None and entry in self.ram.entries:
            self.ram.entries.remove(entry)

    def _state(self, seq: int) -> bytes:
        size = LIB.llama_state_seq_get_size(self.ctx, seq)
        buffer = (ctypes.c_uint8 * size)()
        written = LIB.llama_state_seq_get_data(self.ctx, buffer, size, seq)
        return bytes(buffer)[:written]

    def memory(self) -> dict[str, int]:
        """The tiers' sizes, for the runner's health report (r1 ps)."""
        figures = {"kv_ram": self.ram.used if self.ram else 0, "kv_ram_cap": self.ram.cap if self.ram else 0}
        if self.disk is not None:
            figures.update(kv_disk=sum(e.size for e in self.disk.entries.values()), kv_disk_cap=self.disk.cap)
        return figures


def tiers_for(ctx: Any, config: dict[str, Any] | None) -> Tiers | None:
    """The tiers a runner's load options ask for (scheduler.start_runner puts them there), or None."""
    if not config or not (config.get("disk") or config.get("ram")):
        return None
    disk = None
    if config.get("disk"):
        try:
            disk = DiskTier(Path(config["dir"]), identity(config["model"]), int(config["disk"]))
        except OSError as exc:  # a read-only or full R1_HOME costs the cache, never the model
            log.warning("no prompt cache on disk for this model: %s", exc)
    if disk is None and not config.get("ram"):
        return None
    return Tiers(ctx, disk, int(config.get("ram", 0)), int(config.get("min_tokens", 1024)))
