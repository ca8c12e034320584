"""The prompt cache on disk: one file per saved prompt prefix, under R1_HOME/kv/<weights id>/.

A file holds one sequence's KV cells as llama.cpp's llama_state_seq_get_data wrote them (or, named
"mlx-*.kv", an MLX prompt cache as mlx_disk_cache.py lays it out), behind a header:

    b"r1kv", then the header's length (4 bytes, little-endian), then the header (JSON: the file format,
    the identity that must match the runner's (the model's weights id, llama-cpp-python's version,
    llama.cpp's state format), the tokens the cells hold, the state's size and its SHA-256), then the state.

A file whose header cannot be read, whose identity differs, whose size disagrees with its header, whose
checksum fails or that llama.cpp refuses is removed, never loaded. Files are written by one background
thread (the batch loop only copies the bytes out) to a temporary name and renamed into place, so two
runners of the same weights never write one file together, and a reader never sees half a file. The
folder stays within its cap: the least recently used files go first (a load touches its file).

Nothing here imports llama.cpp: the runner's exit waits for the writes (`finish_writes`) whatever its backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import shared_prefix

log = logging.getLogger("r1.kv")

MAGIC = b"r1kv"
FILE_FORMAT = 1
SUFFIX = ".kv"
MAX_HEADER = 64 * 1024**2  # a header (JSON, mostly the tokens) is read whole: no more than this


@dataclass
class Entry:
    """A saved prefix: the tokens its cells hold, and where they are (a file, or bytes in RAM)."""

    tokens: tuple[int, ...]
    size: int  # bytes of state
    used: float  # last written or loaded, for least-recently-used eviction
    path: Path | None = None
    state: bytes | None = None


def file_name(tokens: tuple[int, ...], prefix: str = "") -> str:
    """`prefix` keeps formats apart (MLX files start with "mlx-"): a name never stands for two kinds of state."""
    return prefix + hashlib.sha256(struct.pack(f"<{len(tokens)}i", *tokens)).hexdigest()[:40] + SUFFIX


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The header and the offset where the state starts; ValueError if it is not one of ours."""
    with open(path, "rb") as f:
        start = f.read(8)
        if len(start) != 8 or start[:4] != MAGIC:
            raise ValueError("not an r1 KV cache file")
        (length,) = struct.unpack("<I", start[4:])
        if length > MAX_HEADER:
            raise ValueError(f"its header claims {length} bytes")
        header = json.loads(f.read(length))
    if not isinstance(header, dict) or not isinstance(header.get("tokens"), list):
        raise ValueError("its header holds no tokens")
    if not isinstance(header.get("size"), int) or header["size"] < 0:
        raise ValueError("its header gives no size")
    return header, 8 + length


class Writer:
    """The one thread that writes cache files, so the batch loop never waits on the disk."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[DiskTier, tuple[int, ...], bytes]] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def put(self, tier: DiskTier, tokens: tuple[int, ...], state: bytes) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="kv-writer", daemon=True)
                self.thread.start()
        self.jobs.put((tier, tokens, state))

    def _run(self) -> None:
        while True:
            tier, tokens, state = self.jobs.get()
            try:
                tier.write(tokens, state)
            except OSError as exc:
                log.warning("could not save a prompt cache file in %s: %s", tier.folder, exc)
            finally:
                self.jobs.task_done()

    def finish(self, timeout: float) -> None:
        """Wait, up to `timeout` seconds, for the files queued so far."""
        deadline = time.monotonic() + timeout
        while self.jobs.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)


WRITER = Writer()


def finish_writes(timeout: float = 4.0) -> None:
    """Called as the runner exits: the prompts it saved reach the disk."""
    WRITER.finish(timeout)


class DiskTier:
    """The saved prefixes of one model, in one folder, within `cap` bytes."""

    def __init__(self, folder: Path, identity: dict[str, Any], cap: int, prefix: str = "") -> None:
        self.folder, self.identity, self.cap, self.prefix = folder, identity, cap, prefix
        self.entries: dict[Path, Entry] = {}
        self.lock = threading.RLock()  # the writer thread and the batch loop both change `entries`
        self._seen = -1.0  # the folder's mtime when last scanned: another runner's files show up on change
        folder.mkdir(parents=True, exist_ok=True)
        self.scan()

    def scan(self) -> None:
        """Read the headers of files not known yet; remove the ones that are not good for this model."""
        try:
            mtime = self.folder.stat().st_mtime
        except OSError:
            return
        if mtime == self._seen:
            return
        self._seen = mtime
        present = set(self.folder.glob("*" + SUFFIX))
        with self.lock:
            for path in set(self.entries) - present:
                del self.entries[path]
            for path in present - set(self.entries):
                entry = self._entry(path)
                if entry is not None:
                    self.entries[path] = entry

    def _entry(self, path: Path) -> Entry | None:
        try:
            header, offset = _read_header(path)
            stat = path.stat()
            if header.get("identity") != self.identity:
                raise ValueError("it was saved for another model or another llama.cpp state format")
            if stat.st_size != offset + header["size"]:
                raise ValueError(f"it holds {stat.st_size - offset} bytes of state, not {header['size']}")
            return Entry(tuple(header["tokens"]), header["size"], stat.st_mtime, path=path)
        except FileNotFoundError:
            return None  # evicted by another runner meanwhile
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.remove(path, str(exc))
            return None

    def remove(self, path: Path, why: str) -> None:
        log.warning("removing the prompt cache file %s: %s", path, why)
        with self.lock:
            self.entries.pop(path, None)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def find(self, prompt: list[int], longest: int) -> list[Entry]:
        """Saved prefixes that share more than `longest` tokens with the prompt, the most shared first."""
        self.scan()
        with self.lock:
            return sorted((e for e in self.entries.values() if e.size and shared_prefix(e.tokens, prompt) > longest),
                          key=lambda e: -shared_prefix(e.tokens, prompt))

    def has(self, tokens: tuple[int, ...]) -> bool:
        return (self.folder / file_name(tokens, self.prefix)) in self.entries

    def read(self, entry: Entry) -> bytes | None:
        """The state of a file whose checksum holds; a bad file is removed."""
        assert entry.path is not None
        try:
            header, offset = _read_header(entry.path)
            with open(entry.path, "rb") as f:
                f.seek(offset)
                state = f.read(header["size"] + 1)  # bounded: one byte more tells a file that grew
            if len(state) != header["size"] or hashlib.sha256(state).hexdigest() != header["sha256"]:
                raise ValueError("its checksum does not match its contents")
            os.utime(entry.path)  # recently used: evicted last
            entry.used = time.time()
            return state
        except FileNotFoundError:
            with self.lock:
                self.entries.pop(entry.path, None)
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.remove(entry.path, str(exc))
            return None

    def save(self, tokens: tuple[int, ...], state: bytes) -> None:
        """Queue the file: written in the background."""
        if len(state) <= self.cap:
            with self.lock:  # known at once (sized 0: not loadable yet), so it is queued once
                self.entries.setdefault(self.folder / file_name(tokens, self.prefix), Entry(tokens, 0, time.time()))
            WRITER.put(self, tokens, state)

    def write(self, tokens: tuple[int, ...], state: bytes) -> None:
        path = self.folder / file_name(tokens, self.prefix)
        header = json.dumps({"format": FILE_FORMAT, "identity": self.identity, "tokens": list(tokens),
                             "size": len(state), "sha256": hashlib.sha256(state).hexdigest()}).encode()
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(temporary, "wb") as f:
            f.write(MAGIC + struct.pack("<I", len(header)) + header)
            f.write(state)
        os.replace(temporary, path)
        with self.lock:
            self.entries[path] = Entry(tokens, len(state), time.time(), path=path)
        self._evict()

    def _evict(self) -> None:
        """Remove the least recently used files until the folder is within its cap (other runners' too)."""
        self._seen = -1.0
        self.scan()
        with self.lock:
            entries = sorted(self.entries.values(), key=lambda e: e.used)
        total = sum(e.size for e in entries)
        for entry in entries:
            if total <= self.cap:
                break
            assert entry.path is not None
            log.info("prompt cache over its %d bytes: removing %s, used least recently", self.cap, entry.path.name)
            with self.lock:
                self.entries.pop(entry.path, None)
            entry.path.unlink(missing_ok=True)
            total -= entry.size

