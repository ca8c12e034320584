"""Blobs whose bytes another tool owns (Ollama's store, the Hugging Face cache, a user's own file).

r1 takes them in without copying and without touching them: a copy-on-write clone where the file
system can (an independent file, r1's own), else a hard link, else a symlink to the source. A hard
link or a symlink shares the other tool's bytes, so r1 never chmods or moves it, records what the
file looked like (size, mtime, inode), and refuses to serve it once that changes. Removing such a
blob unlinks r1's name only: the other tool's file stays.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .blobs import (IMPORT_PREFIX, BlobStore, ImportChangedError, Ingested, Progress, Readable, corrupt, hash_file,
                    parse_digest, reflink)
from .confined import UNCONFINED, Confinement, OpenedFile, RefusedFileError, open_regular, pinned_path

Fallback = Literal["symlink", "copy"]
Usable = Callable[[str, int], bool]  # (digest, size) -> whether the store already has sound bytes for it


@dataclass(frozen=True)
class BlobSource:
    """What an externally held blob was when r1 took it in."""

    digest: str
    kind: str  # "linked" (a hard link: one inode, two names) or "symlinked" (blobs/ points at source)
    source: str  # the absolute path r1 took it from
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, digest: str, kind: str, source: Path, status: os.stat_result) -> BlobSource:
        return cls(digest, kind, str(source), status.st_size, status.st_mtime_ns, status.st_ino)

    def to_row(self) -> dict[str, Any]:
        return {"digest": self.digest, "kind": self.kind, "source": self.source, "size": self.size,
                "mtime_ns": self.mtime_ns, "inode": self.inode}

    def problem(self, blob: Path) -> str | None:
        """"gone" or "changed" when the blob can no longer be served as imported; None while it can,
        or once r1 has put bytes of its own there (a pull or a copy replaced the link: the record is
        stale, see replaced()). A stat or two, following a symlink to its source; nothing is read."""
        try:
            if self.replaced(blob):
                return None
            status = blob.stat()
        except FileNotFoundError:
            return "gone"
        return None if _fingerprint(status) == (self.size, self.mtime_ns, self.inode) else "changed"

    def replaced(self, blob: Path) -> bool:
        """Whether blobs/ now holds a file of r1's own under this digest instead of r1's link. Only r1
        writes there, so a hard link's inode cannot change any other way (the other tool replacing
        its file leaves r1's link, and the bytes, as they were)."""
        entry = os.lstat(blob)
        if self.kind == "symlinked":
            return not stat.S_ISLNK(entry.st_mode)
        return entry.st_ino != self.inode

@dataclass(frozen=True)
class BrokenFile:
    """A model file whose externally held blob cannot be served."""

    path: str  # the file's path in the model
    digest: str
    source: str
    kind: str  # "linked" or "symlinked"
    problem: str  # "gone" or "changed"

    def __str__(self) -> str:
        return f"{self.path}: {describe(self.kind, self.source, self.problem)}"


def describe(kind: str, source: str, problem: str) -> str:
    """What `r1 list`, `r1 show`, a refused load and the start-up log say about a broken blob."""
    if problem == "changed":
        return f"changed since it was imported from {source}"
    if kind == "symlinked":
        return f"broken: {source} is gone"
    return f"broken: r1's link to {source} is gone from the store"


def pinned(source: BlobSource, blob: Path, held: contextlib.ExitStack) -> Path:
    """A path that reads a symlinked blob's source file as it was imported, whatever its path leads to
    now: the file opened through the link, checked to be the one imported (size, mtime, inode) and kept
    open in `held` (confined.pinned_path). A hard link or a clone is r1's own name for its inode: the
    blob itself."""
    try:
        if source.kind != "symlinked" or source.replaced(blob):
            return blob
    except FileNotFoundError:  # gone: reading it says so
        return blob
    opened = held.enter_context(open_regular(blob))
    if _fingerprint(opened.status) != (source.size, source.mtime_ns, source.inode):
        raise ImportChangedError(f"{source.source} changed while it was being imported; try again once it is stable")
    return pinned_path(opened)


def _fingerprint(status: os.stat_result) -> tuple[int, int, int]:
    return status.st_size, status.st_mtime_ns, status.st_ino


def _hard_link(src: Path, tmp: Path) -> bool:
    # No ownership needed: nothing is ever done to the shared inode but reading it.
    try:
        os.link(src, tmp)
        return True
    except OSError:  # another file system (EXDEV), or not permitted (EPERM: protected_hardlinks)
        return False


def adopt(
    blobs: BlobStore, src: Path, *, sha256: str | None = None, trust: bool = False, copy: bool = False,
    fallback: Fallback = "symlink", usable: Usable | None = None, progress: Progress | None = None,
    rules: Confinement = UNCONFINED,
) -> tuple[Ingested, BlobSource | None]:
    """Take a file r1 does not own into blobs/ without changing it; the BlobSource to record, if any.

    The file must be a regular file where `rules` allow (confined.py), and what r1 takes is the file it
    opened then, even if the path changes afterwards. `sha256` is the digest the other tool names the
    file by: checked against the bytes, or with `trust` taken as is without reading them. `copy`
    copies; otherwise a reflink, else a hard link, else `fallback`: a symlink (another tool's store)
    or a copy (a user's file, which may be deleted). `usable` says whether the store already holds
    sound bytes for a digest (default: blobs.has)."""
    if trust and not sha256:
        raise ValueError("trust needs the sha256 the file is named by")
    expected = parse_digest(sha256) if sha256 else None
    usable = usable or blobs.has
    with open_regular(src, rules) as source:
        before = source.status
        if expected and trust and usable(expected, before.st_size):
            return Ingested(expected, before.st_size, "stored"), None
        if copy:
            return blobs.copy_in(source.path, progress, expected=expected, usable=usable, opened=source.file), None
        return _share(blobs, source, expected, trust, fallback, usable, progress)


def _share(blobs: BlobStore, source: OpenedFile, expected: str | None, trust: bool, fallback: Fallback,
           usable: Usable, progress: Progress | None) -> tuple[Ingested, BlobSource | None]:
    """The open file into blobs/ as a reflink, a hard link, or `fallback`, and hashed (unless trusted)."""
    src, before = source.path, source.status
    tmp = blobs.new_partial(IMPORT_PREFIX)
    try:
        if reflink(source.file, tmp):
            how = "reflinked"
        elif _hard_link(src, tmp):
            how = "linked"
        elif fallback == "copy":
            return blobs.copy_in(src, progress, expected=expected, usable=usable, opened=source.file), None
        else:
            os.symlink(src, tmp)
            how = "symlinked"
        if how != "reflinked" and _identity(tmp.stat()) != _identity(before):  # a swap between open and link
            raise RefusedFileError(src, "it was replaced while r1 linked it")
        digest = expected if trust and expected else _hash(tmp if how == "reflinked" else source.file, src, expected,
                                                           progress)
        after = tmp.stat()  # the clone's, or (following the link) the shared file's
        if how != "reflinked" and _fingerprint(after) != _fingerprint(before):
            raise ImportChangedError(f"{src} changed while it was being imported; try again once it is stable")
        if usable(digest, after.st_size):
            return Ingested(digest, after.st_size, "stored"), None
        if how == "reflinked":
            blobs.commit(tmp, digest)
            return Ingested(digest, after.st_size, how), None
        blobs.place(tmp, digest)
        return Ingested(digest, after.st_size, how), BlobSource.of(digest, how, src, after)
    finally:
        tmp.unlink(missing_ok=True)  # a leftover link or clone, never what it points at


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


def _hash(readable: Readable, src: Path, expected: str | None, progress: Progress | None) -> str:
    digest, _ = hash_file(readable, progress)
    if expected and digest != expected:
        raise corrupt(src, expected)
    return digest
