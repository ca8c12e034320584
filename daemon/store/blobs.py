"""Content-addressed blob files: blobs/sha256-<hex>, immutable and read-only (or, for bytes another
tool owns, a hard link or symlink to its file: see external.py).

This module does file work only (no index): bringing bytes in through partial/,
verifying their sha256, making them durable, and removing them. It is safe to call
from several threads; a blob's final rename is atomic, so readers never see half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path
from typing import BinaryIO

from ..errors import BadRequest, InsufficientStorage, is_disk_full

CHUNK = 4 * 1024 * 1024
# Partial files a restart can never resume (imports; downloads whose digest was not known up
# front); reconcile removes them. Partials named after their digest are kept for resuming.
IMPORT_PREFIX = "import-"
DOWNLOAD_PREFIX = "dl-"
VIEW_PREFIX = "view-"  # folders of symlinks for reading a model's metadata before it is recorded
EPHEMERAL_PREFIXES = (IMPORT_PREFIX, DOWNLOAD_PREFIX, VIEW_PREFIX)
_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")
_FICLONE = 0x40049409  # Linux ioctl: copy-on-write clone (btrfs, XFS, bcachefs)

Progress = Callable[[int], None]
Readable = Path | BufferedReader  # a path, or a file opened already (confined.open_regular), read from its start


class InvalidDigestError(BadRequest, ValueError):
    pass


class ImportChangedError(BadRequest):
    """The source file changed while it was being imported."""


class CorruptSourceError(BadRequest):
    """A file whose bytes do not match the sha256 it is named by."""


def corrupt(src: Path, expected: str) -> CorruptSourceError:
    return CorruptSourceError(
        f"{src} is corrupt: its bytes do not match the sha256 it is named by ({expected}); "
        "the other tool's store is damaged, pull it again there"
    )


class UploadMismatchError(BadRequest):
    """Uploaded bytes whose digest is not the one they were sent as."""


def parse_digest(text: str) -> str:
    """Canonical 'sha256:<hex>' from 'sha256:<hex>' or 'sha256-<hex>'; anything else is refused."""
    match = _DIGEST.fullmatch(text or "")
    if not match:
        raise InvalidDigestError(f"invalid digest {text!r}: expected sha256:<64 hex digits>")
    return "sha256:" + match.group(1).lower()


def hash_file(path: Readable, progress: Progress | None = None) -> tuple[str, int]:
    """The sha256 digest and size of a file, reading it once."""
    with _reading(path) as src:
        return _hash_stream(src, None, progress)


def _copy_hashing(src: Readable, dst: Path, progress: Progress | None) -> tuple[str, int]:
    with _reading(src) as fin, open(dst, "xb") as fout:
        return _hash_stream(fin, fout, progress)


def _hash_stream(src: BufferedReader, out: BinaryIO | None, progress: Progress | None) -> tuple[str, int]:
    """The sha256 digest and size of what `src` holds from here on, written to `out` too if given."""
    sha = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while n := src.readinto(buffer):
        sha.update(view[:n])
        if out is not None:
            out.write(view[:n])
        size += n
        if progress:
            progress(n)
    return "sha256:" + sha.hexdigest(), size


@contextlib.contextmanager
def _reading(src: Readable) -> Iterator[BufferedReader]:
    """A path opened for reading, or a file opened already, read from its start (and left open)."""
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as file:
            yield file
    else:
        src.seek(0)
        yield src


@contextlib.contextmanager
def disk_full_is(message: str) -> Iterator[None]:
    """Turn 'no space left on device' (or a full quota) into InsufficientStorage saying `message`; other errors pass."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise InsufficientStorage(message) from exc
        raise


def reflink(src: Readable, dst: Path) -> bool:
    """A copy-on-write clone: a copy that costs no space and shares nothing mutable."""
    try:
        with _reading(src) as fin, open(dst, "xb") as fout:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
        return True
    except OSError:
        dst.unlink(missing_ok=True)
        return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _target_size(link: Path) -> int | None:
    try:
        return link.stat().st_size
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Ingested:
    digest: str
    size: int
    how: str  # "stored" (already there), "reflinked", "linked", "symlinked" or "copied"

    @property
    def bytes_linked(self) -> int:
        """Bytes taken in without writing them (a clone, a hard link or a symlink)."""
        return self.size if self.how in ("reflinked", "linked", "symlinked") else 0

    @property
    def bytes_copied(self) -> int:
        return self.size if self.how == "copied" else 0


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs"
        self.partial = root / "partial"

    def create_dirs(self) -> None:
        for path in (self.dir, self.partial):
            path.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.dir / parse_digest(digest).replace(":", "-")

    def has(self, digest: str, size: int | None = None) -> bool:
        try:
            stat = self.path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or stat.st_size == size

    def on_disk(self) -> tuple[dict[str, int | None], list[Path]]:
        """Blobs present ({digest: size}; a symlinked blob's size is its source's, None when the source
        is gone) and files in blobs/ that are not blobs."""
        blobs: dict[str, int | None] = {}
        strays: list[Path] = []
        for entry in os.scandir(self.dir):
            match = _DIGEST.fullmatch(entry.name)
            if match and entry.name == entry.name.lower() and entry.is_symlink():
                blobs["sha256:" + match.group(1)] = _target_size(Path(entry.path))
            elif match and entry.is_file(follow_symlinks=False) and entry.name == entry.name.lower():
                blobs["sha256:" + match.group(1)] = entry.stat().st_size
            else:
                strays.append(Path(entry.path))
        return blobs, strays

    def new_partial(self, prefix: str) -> Path:
        return self.partial / f"{prefix}{uuid.uuid4().hex}"

    def copy_in(self, src: Path, progress: Progress | None = None, *, expected: str | None = None,
                usable: Callable[[str, int], bool] | None = None, opened: BufferedReader | None = None) -> Ingested:
        """Copy a file into blobs/ (`opened`: the file `src` names, opened already: read that). Hashed first,
        so a file already in the store costs no write (`usable` says whether it is; default has()),
        unless its digest is `expected`; then hashed again while copying, so what lands in the store is
        verified even if the source changes."""
        usable = usable or self.has
        reading: Readable = opened or src
        size = os.fstat(opened.fileno()).st_size if opened else os.stat(src).st_size
        digest, size = (expected, size) if expected else hash_file(reading)
        if usable(digest, size):
            return Ingested(digest, size, "stored")
        self.check_space(size, src)
        tmp = self.new_partial(IMPORT_PREFIX)
        try:
            with disk_full_is(f"no space left on the device holding {self.dir.parent} while importing {src}; "
                              "free some space (r1 rm unused models) and try again"):
                copied, size = _copy_hashing(reading, tmp, progress)
            if copied != digest:
                if expected:
                    raise corrupt(src, expected)
                raise ImportChangedError(f"{src} changed while it was being imported; try again once it is stable")
            self.commit(tmp, digest)
            return Ingested(digest, size, "copied")
        finally:
            tmp.unlink(missing_ok=True)

    def check_space(self, needed: int, what: Path | str) -> None:
        free = shutil.disk_usage(self.partial).free
        if needed > free:
            raise InsufficientStorage(
                f"not enough space for {what}: it needs {needed:,} bytes and the device holding "
                f"{self.dir.parent} has {free:,} free; free some space (r1 rm unused models) and try again"
            )

    def commit(self, tmp: Path, digest: str) -> Path:
        """Make verified bytes durable and move them into blobs/ under their digest."""
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o444)
        return self.place(tmp, digest)

    def place(self, tmp: Path, digest: str) -> Path:
        """Move a file or link into blobs/ under its digest, as is (no chmod: a hard link or a
        symlink shares another tool's file, which r1 must not change)."""
        final = self.path(digest)
        os.replace(tmp, final)
        _fsync_dir(self.dir)
        return final

    def remove(self, digest: str) -> None:
        """Unlink the blob's name: for a hard link or a symlink, never the other tool's file."""
        self.path(digest).unlink(missing_ok=True)


class Upload:
    """A blob arriving in pieces (Ollama's blob upload): hashed and written into partial/ as they come.
    The bytes become the blob only if they have the digest they were sent as. Its methods do file
    work and hashing: call them from a worker thread, not an event loop."""

    def __init__(self, blobs: BlobStore, digest: str, size: int | None) -> None:
        if size:
            blobs.check_space(size, f"the upload of {digest}")
        self._blobs, self.digest = blobs, parse_digest(digest)
        self._path = blobs.new_partial(IMPORT_PREFIX)
        self._file = self._path.open("xb")
        self._sha = hashlib.sha256()

    def write(self, data: bytes) -> None:
        with disk_full_is(f"the disk filled up while receiving {self.digest}"):
            self._file.write(data)
        self._sha.update(data)

    def commit(self) -> None:
        """Store the bytes received as the blob; nothing is stored if they have another digest."""
        with disk_full_is(f"the disk filled up while receiving {self.digest}"):
            self._file.close()
        actual = "sha256:" + self._sha.hexdigest()
        if actual != self.digest:
            raise UploadMismatchError(f"the uploaded bytes have digest {actual}, not {self.digest}; nothing was stored")
        self._blobs.commit(self._path, self.digest)

    def discard(self) -> None:
        """Remove what was received, unless commit() made it the blob."""
        self._file.close()
        self._path.unlink(missing_ok=True)
