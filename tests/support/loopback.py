"""Fake servers for tests on 127.0.0.1: an aiohttp app on an event loop of its own in a background
thread, so synchronous tests and other processes (a daemon pointed at `url`) can all use it.
Subclasses answer every request in `_handle`; the helpers below serve byte ranges and cut a
body off part-way, as flaky servers do."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from typing import Any

from aiohttp import web


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """(start, end inclusive) for a single "bytes=" range; None means serve the whole file (as HTTP says
    for a range we don't understand); Unsatisfiable means 416."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (m[1] == "" and m[2] == ""):
        return None
    if m[1] == "":  # suffix range: the last N bytes
        n = int(m[2])
        if n == 0 or total == 0:
            raise Unsatisfiable
        return max(0, total - n), total - 1
    start = int(m[1])
    if start >= total:
        raise Unsatisfiable
    end = int(m[2]) if m[2] else total - 1
    if end < start:
        return None
    return start, min(end, total - 1)


async def cut_off(request: web.Request, who: str) -> None:
    """End the connection before Content-Length is reached, after letting what was written reach the
    socket: the client gets exactly what was sent, then the peer closes mid-body."""
    transport = request.transport
    if transport is not None:
        deadline = time.monotonic() + 5
        while transport.get_write_buffer_size() and not transport.is_closing() and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        transport.abort()
    raise ConnectionResetError(f"{who}: dropped on purpose")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server a test starts itself."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LoopbackServer:
    """Start with `with Server() as server:`; `server.url` is its http://127.0.0.1:PORT. It logs the
    requests it gets and counts the body bytes it serves, by whatever key the subclass counts them."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[tuple[str | None, ...]] = []  # what the subclass logs of each request
        self._lock = threading.Lock()  # guards the log, the counters and the subclass's state: tests set, the loop reads
        self._served: dict[Any, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._closing = False  # set by stop(): bodies in flight end at their next chunk

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    def _log(self, *entry: str | None) -> None:
        with self._lock:
            self.requests.append(entry)

    def _count(self, key: Any, nbytes: int) -> None:
        with self._lock:
            self._served[key] = self._served.get(key, 0) + nbytes

    def _served_bytes(self, key: Any) -> int:
        with self._lock:
            return self._served.get(key, 0)

    def reset_counters(self) -> None:
        """Forget served bytes and the request log (knobs stay as they are)."""
        with self._lock:
            self._served.clear()
            self.requests.clear()

    def start(self) -> Any:
        if self._thread is not None:
            return self
        self._closing = False
        # Bind here, in the caller's thread, so the port is known (and listening) when start() returns.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", int(self.url.rsplit(":", 1)[1]) if self.url else 0))  # a restart keeps its URL
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._astart(sock), self._loop).result(timeout=30)
        return self

    async def _astart(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown_timeout: stop() must not wait a minute for a throttled transfer.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._closing = True
        if self._runner is not None:
            with contextlib.suppress(Exception):  # stopping must not fail a test's teardown
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._thread = self._loop = self._runner = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
