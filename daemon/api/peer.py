"""Who sent a request: the Unix socket peer's uid, pid and program (from the kernel), or the TCP address.

The kernel vouches for a socket peer's credentials (SO_PEERCRED on Linux, LOCAL_PEERCRED and
LOCAL_PEERPID on macOS), so the request log can say which app asked, not only that "someone
local" did. Best effort: a platform without them records the kind of client alone.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import NamedTuple

import psutil
from aiohttp import web

SOL_LOCAL, LOCAL_PEERCRED, LOCAL_PEERPID = 0, 0x001, 0x002  # macOS's <sys/un.h>


class Peer(NamedTuple):
    kind: str  # "unix", "tcp" or "other" (a test transport)
    client: str | None  # the program's name, or the TCP address
    uid: int | None = None
    pid: int | None = None


def peer_of(request: web.Request) -> Peer:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None:
        return Peer("other", None)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return Peer("tcp", request.remote)
    if sock.family == socket.AF_UNIX:
        uid, pid = _credentials(sock)
        return Peer("unix", _program(pid), uid, pid)
    return Peer("other", None)


def _credentials(sock: socket.socket) -> tuple[int | None, int | None]:
    try:
        if sys.platform.startswith("linux"):
            pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            return uid, pid
        if sys.platform == "darwin":
            # struct xucred: u_int cr_version; uid_t cr_uid; ...
            uid = struct.unpack("2I", sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, 8 + 4 * 17)[:8])[1]
            pid = struct.unpack("i", sock.getsockopt(SOL_LOCAL, LOCAL_PEERPID, 4))[0]
            return uid, pid
    except (OSError, struct.error):
        pass
    return None, None


TASK_COMM_LEN = 15  # Linux keeps this much of a program's name in /proc/PID/comm


def _program(pid: int | None) -> str | None:
    if not pid:
        return None
    if sys.platform.startswith("linux"):  # a third of psutil's time, on every request over the socket
        try:
            with open(f"/proc/{pid}/comm", "rb") as comm:
                name = comm.read().rstrip(b"\n").decode(errors="replace")
        except OSError:
            return None
        if len(name) < TASK_COMM_LEN:
            return name
    try:
        return psutil.Process(pid).name()  # the whole of a long name, and other platforms' way
    except psutil.Error:  # gone already, or not ours to look at
        return None
