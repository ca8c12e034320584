"""`r1 serve`: one daemon per socket and per store, listening on a Unix socket until signalled."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

from . import __version__
from .app import create_app
from .config import Settings
from .errors import R1Error
from .store import Store

log = logging.getLogger("r1.daemon")


class AlreadyRunningError(R1Error):
    pass


@contextlib.contextmanager
def exclusive(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an flock for the daemon's lifetime; the kernel drops it if the daemon dies."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise AlreadyRunningError(
                f"another r1 daemon (pid {pid}) is already using {what}; stop it first, "
                "or give this one its own R1_SOCKET and R1_HOME"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def bind_unix_socket(path: Path) -> socket.socket:
    """Listen on `path` with mode 0600 from the first instant; replace a stale socket file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody answers: left by a daemon that died
        else:
            raise AlreadyRunningError(f"something is already listening on {path}; stop it or set R1_SOCKET")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    with exclusive(settings.home / "daemon.lock", f"the store {settings.home}"), exclusive(
        settings.socket.with_name(settings.socket.name + ".lock"), f"the socket {settings.socket}"
    ):
        store = Store(settings.home)
        report = await asyncio.to_thread(store.open)
        log.info("store %s ready (%d repairs)", settings.home, len(report.actions))
        runner = web.AppRunner(create_app(settings, store), handle_signals=False, access_log=None)
        sock = bind_unix_socket(settings.socket)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
            log.info("r1 %s listening on %s (pid %d)", __version__, settings.socket, os.getpid())
            await stop.wait()
            log.info("shutting down")
        finally:
            await runner.cleanup()
            sock.close()
            settings.socket.unlink(missing_ok=True)
            store.close()
    log.info("stopped")


def run(settings: Settings) -> int:
    """Run the daemon in the foreground until SIGTERM or SIGINT; the process exit code."""
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # huggingface_hub's HTTP client logs every request at INFO; r1 logs what a pull did instead.
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        asyncio.run(serve(settings))
    except R1Error as exc:
        log.error("%s", exc)
        return 1
    return 0
