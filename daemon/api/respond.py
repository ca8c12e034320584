"""One generation route, whatever the dialect: read the body, parse it into the core's Request,
generate, then stream the events or collect the whole answer, each shaped as the dialect does."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from ..generation import Chunk, Final, Items, Request, Whole, collect, generate
from .context import CORE
from .fields import get_bool
from .http import Framing, read_json, stream_events

Json = dict[str, Any]


class Dialect(Protocol):
    """How one API writes one generation; made per request (it may hold an id, a flag of the body)."""

    framing: Framing
    stream_default: bool

    def event(self, item: Chunk | Final) -> bytes:
        """One streamed event, framed (called once per token: keep it lean)."""

    def answer(self, whole: Whole) -> Json:
        """The whole answer, when the client did not ask for a stream."""




async def respond(request: web.Request, parse: Callable[[Json], Request],
                  dialect: Callable[[Json, Request], Dialect],
                  watch: Callable[[Any, Items], Items] | None = None) -> web.StreamResponse:
    """Everything in the body is checked before the model is asked: a bad field is a 400, not a load.
    `watch(shape, items)`, when given, sees the core's items before they are shaped (to keep the answer)."""
    body = await read_json(request)
    parsed = parse(body)
    return await serve(request, body, parsed, dialect(body, parsed), watch)


async def serve(request: web.Request, body: Json, parsed: Request, shape: Dialect,
                watch: Callable[[Any, Items], Items] | None = None,
                headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """Generate for a request already read and checked, streamed or whole as the body asks, with `headers`."""
    stream = get_bool(body, "stream", shape.stream_default)
    items = generate(request.app[CORE], parsed)
    if watch is not None:
        items = watch(shape, items)
    if stream:
        return await stream_events(request, items, shape.event, shape.framing, headers)
    return web.json_response(shape.answer(await collect(items)), headers=headers)
