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
from .config import ConfigError, Settings, is_loopback, whole_number
from .errors import R1Error
from .api.context import LISTENER
from .redact import redact_logs
from .store import Store
from .store.private import PRIVATE_UMASK

log = logging.getLogger("r1.daemon")


class AlreadyRunningError(R1Error):
    pass


@contextlib.contextmanager
def exclusive(lock_path: Path, what: str, folder_mode: int = 0o700) -> Iterator[None]:
    """Hold an flock for the daemon's lifetime; the kernel drops it if the daemon dies. A missing folder
    for it is made with `folder_mode`."""
    _make_folder(lock_path.parent, folder_mode)
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


def bind_unix_socket(path: Path, mode: int = 0o600) -> socket.socket:
    """Listen on `path`, private (0600) from the first instant, then `mode`; replace a stale socket file."""
    _socket_folder(path.parent, mode)
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
    os.chmod(path, mode)  # 0660 for the system service: members of the socket's group may connect
    sock.listen(128)
    sock.setblocking(False)
    return sock


def socket_folder_mode(mode: int) -> int:
    """The mode of a folder r1 makes for its socket: 0710 when the socket's group may connect (it may
    pass through, not list), else 0700."""
    return 0o710 if mode & 0o070 else 0o700


def _make_folder(folder: Path, mode: int) -> None:
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, mode)  # beyond the umask: 0710 must keep its group bit


def _socket_folder(folder: Path, mode: int) -> None:
    """The socket's folder, made if missing; a warning when the socket's group may connect but the
    folder keeps that group out (R1_HOME, which stays private, is such a folder)."""
    _make_folder(folder, socket_folder_mode(mode))
    if mode & 0o070 and not folder.stat().st_mode & 0o010:
        log.warning("R1_SOCKET_MODE=%04o lets the socket's group connect, but its folder %s does not let the group "
                    "in: put the socket in a folder of its own that the group may enter (as /run/r1/r1.sock)",
                    mode, folder)


def tcp_address(settings: Settings) -> tuple[str, int] | None:
    """R1_HOST as (host, port); a ConfigError when it is malformed or unguarded."""
    if not settings.host:
        return None
    text = settings.host
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "11434"
    host = host.strip("[]") or "127.0.0.1"
    if whole_number(port, 1, 65535) is None:
        raise ConfigError(f"R1_HOST={text!r} is not HOST:PORT (e.g. 127.0.0.1:11434)")
    if not is_loopback(host) and not settings.api_key:
        raise ConfigError(
            f"R1_HOST={text!r} would listen beyond this machine without a key; set R1_API_KEY "
            "(clients send it as Authorization: Bearer ...) or bind to 127.0.0.1"
        )
    return host, int(port)


class TcpListener:
    """The TCP side of the daemon: opened at start (R1_HOST) or later, once, over the socket (`r1 launch`)."""

    def __init__(self, runner: web.AppRunner, keyed: bool) -> None:
        self._runner = runner
        self._keyed = keyed
        self.address: tuple[str, int] | None = None

    async def open(self, host: str, port: int) -> tuple[str, int]:
        if self.address is None:
            site = web.TCPSite(self._runner, host, port)
            await site.start()
            # aiohttp types _server as AbstractServer, which lacks .sockets; TCPSite starts an asyncio.Server
            sockets = site._server.sockets if site._server is not None else []  # type: ignore[attr-defined]
            self.address = (host, sockets[0].getsockname()[1] if sockets else port)
            log.info("also listening on TCP %s:%d%s", *self.address, " (API key required)" if self._keyed else "")
        return self.address


def reopen_log() -> None:
    """SIGHUP: let logrotate move the log file; the next line opens a new one."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()  # FileHandler opens its file again on the next record
    log.info("log file reopened")


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reopen_log)
    tcp = tcp_address(settings)

    with exclusive(settings.home / "daemon.lock", f"the store {settings.home}"), exclusive(
        settings.socket.with_name(settings.socket.name + ".lock"), f"the socket {settings.socket}",
        socket_folder_mode(settings.socket_mode)
    ):
        store = Store(settings.home)
        report = await asyncio.to_thread(store.open)
        log.info("store %s ready (%d repairs)", settings.home, len(report.actions))
        # shutdown_timeout: on SIGTERM, requests in flight get this long before they are cancelled.
        # handler_cancellation: a client that closes its connection cancels its handler, whatever it awaits (a
        # load, a slot, a prompt's evaluation), so nobody's slot works for no one; work that must outlive its
        # client runs in tasks the app owns (http.start_owned_task, http.must_finish). aiohttp's test server,
        # which the in-process tests use, cancels the same way.
        app = create_app(settings, store)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=settings.shutdown_grace,
                               handler_cancellation=True)
        listener = app[LISTENER] = TcpListener(runner, bool(settings.api_key))
        sock = bind_unix_socket(settings.socket, settings.socket_mode)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
            log.info("r1 %s listening on %s (pid %d)", __version__, settings.socket, os.getpid())
            if tcp is not None:
                await listener.open(*tcp)
            await stop.wait()
            log.info("shutting down: requests in flight have %.0f s to finish", settings.shutdown_grace)
        finally:
            await runner.cleanup()
            sock.close()
            settings.socket.unlink(missing_ok=True)
            store.close()
    log.info("stopped")


def run(settings: Settings) -> int:
    """Run the daemon in the foreground until SIGTERM or SIGINT; the process exit code."""
    os.umask(PRIVATE_UMASK)  # what the daemon writes (its log first) is its user's alone
    target = {"filename": settings.log_file} if settings.log_file else {"stream": sys.stderr}
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", **target)
    redact_logs()  # no remote's secret in the log, whoever logs it
    # huggingface_hub's HTTP client logs every request at INFO; r1 logs what a pull did instead.
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        asyncio.run(serve(settings))
    except (R1Error, ConfigError) as exc:
        log.error("%s", exc)
        return 1
    return 0
