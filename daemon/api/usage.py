"""r1's own view of what it served: GET /api/usage (totals) and GET /api/log (the last requests, or a stream of them)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ..config import ConfigError, parse_duration, whole_number
from ..errors import BadRequest
from ..request_log.records import USAGE_KEYS, is_read
from .context import REQUEST_LOG
from .http import NDJSON

routes = web.RouteTableDef()

DEFAULT_SINCE = "7d"
DEFAULT_LIMIT, MAX_LIMIT = 20, 10_000


@routes.get("/api/usage")
async def usage(request: web.Request) -> web.Response:
    """Totals per model, day or client of the requests since `since` (a duration: 7d, 24h); `reads=0`
    leaves out reads of the daemon's state."""
    by = request.query.get("by", "model")
    if by not in USAGE_KEYS:
        raise BadRequest(f"by={by!r}: totals can be by {', '.join(USAGE_KEYS)}")
    since_text = request.query.get("since", DEFAULT_SINCE)
    try:
        since = parse_duration(since_text, "since")
    except ConfigError as exc:
        raise BadRequest(str(exc)) from exc
    start = 0.0 if since < 0 else time.time() - since
    rows = await asyncio.to_thread(request.app[REQUEST_LOG].records.usage, by, start, _reads(request))
    return web.json_response({"by": by, "since": start, "logging": request.app[REQUEST_LOG].enabled, "usage": rows})


def _reads(request: web.Request) -> bool:
    """`reads=0`: leave out the requests that only read the daemon's state (list, ps, show, polling)."""
    text = request.query.get("reads", "1")
    if text not in ("0", "1", "false", "true"):
        raise BadRequest(f"reads={text!r} must be 1 or 0")
    return text in ("1", "true")


def _limit(request: web.Request) -> int:
    text = request.query.get("limit", str(DEFAULT_LIMIT))
    limit = whole_number(text, 0, MAX_LIMIT)
    if limit is None:
        raise BadRequest(f"limit={text!r} must be a whole number from 0 to {MAX_LIMIT}")
    return limit


@routes.get("/api/log")
async def request_log(request: web.Request) -> web.StreamResponse:
    """The last `limit` requests to start, newest first; with follow=1, as NDJSON oldest first and then each
    new one as it is written, until the client leaves or the daemon stops. `reads=0` leaves out reads of the
    daemon's state."""
    limit, reads = _limit(request), _reads(request)
    records = request.app[REQUEST_LOG].records
    if request.query.get("follow") not in ("1", "true"):
        return web.json_response({"requests": await asyncio.to_thread(records.recent, limit, reads)})
    with request.app[REQUEST_LOG].follow() as follower:  # before the read, so nothing falls in between
        rows = await asyncio.to_thread(records.recent, limit, reads)
        seen = rows[0]["id"] if rows else 0
        response = web.StreamResponse(headers={"Content-Type": NDJSON.content_type, "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            for row in reversed(rows):
                await response.write(NDJSON.frame(row))
            while (row := await follower.get()) is not None:
                if row["id"] > seen and (reads or not is_read(row)):
                    await response.write(NDJSON.frame(row))
            await response.write_eof()
        except ConnectionResetError:  # the follower left: found at the first entry written after
            pass
    return response
