"""GET /api/events: server-sent events that follow the daemon's state, for the web console and the CLI.

Events: `ps` (what /api/ps answers) and `pulls` (the pulls under way: name, status, completed, total),
each sent at the start and then whenever it changes; a comment line as a heartbeat so proxies and
browsers keep the stream open. The daemon's own state is polled, which keeps the scheduler and the
pull manager free of subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from .context import CLOSING, PULLS
from .http import NAMED_SSE, sse_event, stream_events
from .ollama import running

POLL_INTERVAL = 0.5  # seconds between looks at the daemon's state
HEARTBEAT_INTERVAL = 15.0  # seconds of silence before a heartbeat comment
HEARTBEAT = b": heartbeat\n\n"

routes = web.RouteTableDef()


def sources(app: web.Application) -> dict[str, Callable[[], Any]]:
    """Each event's name and how to read its current state."""
    return {"ps": lambda: running(app), "pulls": lambda: {"pulls": app[PULLS].in_progress()}}


async def changes(app: web.Application, poll: float = POLL_INTERVAL,
                  heartbeat: float = HEARTBEAT_INTERVAL) -> AsyncIterator[bytes]:
    """Framed events: every source at once, then each one again when it differs; heartbeats between.
    Ends when the daemon shuts down."""
    last: dict[str, Any] = {}
    quiet_since = time.monotonic()
    closing = app[CLOSING]
    while not closing.is_set():
        for name, read in sources(app).items():
            state = read()
            if last.get(name) != state:
                last[name] = state
                quiet_since = time.monotonic()
                yield sse_event(name, state)
        if time.monotonic() - quiet_since >= heartbeat:
            quiet_since = time.monotonic()
            yield HEARTBEAT
        with contextlib.suppress(asyncio.TimeoutError):  # TimeoutError itself from Python 3.11
            await asyncio.wait_for(closing.wait(), poll)


@routes.get("/api/events")
async def events(request: web.Request) -> web.StreamResponse:
    return await stream_events(request, changes(request.app), lambda frame: frame, NAMED_SSE)
