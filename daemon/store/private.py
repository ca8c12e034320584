"""R1_HOME is private to the daemon's user: the folder 0700, the index (r1.db and SQLite's -wal and -shm
beside it) and the remotes' key files 0600. The index holds remote header secrets and stored
conversations; a key file holds a key. The socket's group (R1_SOCKET_MODE 0660) gets the API, never
these files.

SQLite creates -wal and -shm with the database file's mode, so an r1.db made 0600 keeps them 0600;
files an older r1 left readable are tightened at start-up, and the log says so. Blobs stay 0444:
read-only, and reachable only through the private folder. Files of other tools that r1 links to are
never changed.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077  # the daemon's: whatever it writes is its user's alone
FOLDER_MODE, FILE_MODE = 0o700, 0o600
INDEX = "r1.db"
INDEX_FILES = (INDEX, INDEX + "-wal", INDEX + "-shm")
KEYS = "remotes"  # $R1_HOME/remotes/NAME.key


def key_path(home: Path, remote: str) -> Path:
    """Where the key of a remote added with a key (r1 remote add --api-key-file) is kept."""
    return home / KEYS / f"{remote}.key"


def make_private(home: Path) -> list[str]:
    """Create R1_HOME private, or make an existing one private again, with the index's and key files;
    what was changed, each also logged."""
    changed: list[str] = []
    if not home.exists():
        home.mkdir(parents=True, mode=FOLDER_MODE)
    _tighten(home, FOLDER_MODE, changed, follow=True)  # R1_HOME may be a link to the real folder
    index = home / INDEX
    if not index.exists():  # created 0600 before SQLite makes it, whatever the umask
        os.close(os.open(index, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE))
    for name in INDEX_FILES:
        _tighten(home / name, FILE_MODE, changed)
    keys = home / KEYS
    if keys.is_dir():
        _tighten(keys, FOLDER_MODE, changed)
        for key in keys.glob("*.key"):
            _tighten(key, FILE_MODE, changed)
    return changed


def _tighten(path: Path, mode: int, changed: list[str], follow: bool = False) -> None:
    """chmod `path` to `mode` if it lets anyone else in; a link is left alone unless `follow`."""
    try:
        status = os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(status.st_mode) or not stat.S_IMODE(status.st_mode) & ~mode:
        return
    was = stat.S_IMODE(status.st_mode)
    try:
        os.chmod(path, mode)
    except PermissionError:
        log.warning("%s is mode %04o, open to other users, and r1 cannot make it %04o: chmod it yourself",
                    path, was, mode)
        return
    changed.append(f"made {path} private: mode {was:04o} -> {mode:04o}")
    log.warning("made %s private: it was mode %04o, open to other users; now %04o", path, was, mode)
