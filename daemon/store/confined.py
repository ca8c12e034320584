"""Files r1 reads from folders it does not own (another tool's store, a model a client names), read as
what they are and only from where they may be.

Such a folder may be someone else's, and its owner can change it while r1 reads: a link named as a blob
could lead to r1's own key files, a FIFO would never end, /dev/zero would never stop. So each file is
resolved through its links, must land inside the folder it belongs to (and never in r1's own R1_HOME
when a client named it), and is opened once, without following a last link, as a regular file; what
r1 then reads is that open file, checked to be the one inside the folder (the kernel's own path of
the open file, or its device and inode), so a swap after the check changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path

from ..errors import BadRequest

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO opens, never waits
_PROC_FDS = Path("/proc/self/fd")  # Linux: opening /proc/self/fd/N opens what this process's fd N is
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
          (stat.S_ISSOCK, "a socket"))


class RefusedFileError(BadRequest):
    """A file r1 will not read: it leads out of the folder it belongs to, or is not a regular file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"refused {path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class OpenedFile:
    path: Path  # the real path that was opened (links resolved)
    file: BufferedReader  # read this, never the path again
    status: os.stat_result  # of the open file


@dataclass(frozen=True)
class Confinement:
    """Where a file may be: `inside` a folder (links resolved), and not in `private` (R1_HOME, when a
    client named the file). None: no such rule."""

    inside: Path | None = None
    private: Path | None = None

    def check(self, path: Path, real: Path) -> None:
        if self.inside is not None:
            root = Path(os.path.realpath(self.inside))
            if not real.is_relative_to(root):
                raise RefusedFileError(path, f"it leads to {real}, outside {self.inside}")
        if self.private is not None and real.is_relative_to(os.path.realpath(self.private)):
            raise RefusedFileError(path, f"it leads to {real}, inside r1's own private folder (R1_HOME); "
                                   "r1 cp copies a model already in the store")


UNCONFINED = Confinement()  # a regular file, wherever it is


@contextlib.contextmanager
def open_regular(path: Path, rules: Confinement = UNCONFINED) -> Iterator[OpenedFile]:
    """`path` opened for reading as a regular file where `rules` allow it; a RefusedFileError saying why
    not otherwise, an OSError (FileNotFoundError...) when it cannot be opened at all."""
    real = Path(os.path.realpath(path))
    rules.check(path, real)
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RefusedFileError(path, "it became a link while r1 opened it") from exc
        raise
    try:
        status = _checked(path, real, fd, rules)
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield OpenedFile(real, file, status)


def _checked(path: Path, real: Path, fd: int, rules: Confinement) -> os.stat_result:
    """The open file's status, once it is known to be a regular file where `rules` allow."""
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        kind = next((what for test, what in _KINDS if test(status.st_mode)), "something else")
        raise RefusedFileError(path, f"it is {kind}, not a regular file")
    os.set_blocking(fd, True)
    _check_still(path, real, fd, status, rules)
    return status


def _check_still(path: Path, real: Path, fd: int, status: os.stat_result, rules: Confinement) -> None:
    """Refuse an open file that is not the one checked: a folder on its way was swapped for a link."""
    opened = _kernel_path(fd)
    if opened is not None:
        if opened != real:
            rules.check(path, opened)  # moved, but still where it may be: fine
        return
    try:
        now = os.stat(real, follow_symlinks=False)
    except OSError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != (status.st_dev, status.st_ino):
        raise RefusedFileError(path, "it changed while r1 opened it")


def _kernel_path(fd: int) -> Path | None:
    """Where the open file is, as the kernel knows it; None where it cannot say."""
    try:
        if sys.platform == "darwin":
            return Path(os.fsdecode(fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024)).rstrip(b"\0")))
        return Path(os.readlink(_PROC_FDS / str(fd)))
    except OSError:
        return None


def pinned_path(opened: OpenedFile) -> Path:
    """A path that opens this open file and no other, whatever its own path leads to by then: Linux's
    /proc/self/fd/N (in this process). Where there is no /proc (macOS), its path, with no such promise."""
    return _PROC_FDS / str(opened.file.fileno()) if _PROC_FDS.is_dir() else opened.path


def read_small(path: Path, limit: int, rules: Confinement = Confinement()) -> bytes:
    """The whole of a small regular file (a settings layer, a manifest), refused past `limit` bytes."""
    with open_regular(path, rules) as opened:
        if opened.status.st_size > limit:
            raise RefusedFileError(path, f"it holds {opened.status.st_size:,} bytes; r1 reads at most {limit:,}")
        data = opened.file.read(limit + 1)
    if len(data) > limit:
        raise RefusedFileError(path, f"it grew past {limit:,} bytes while r1 read it")
    return data
