"""HTTP plumbing shared by the routes: JSON bodies, field checks, errors, NDJSON streams."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from ..errors import BadRequest, R1Error
from .context import TASKS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# OpenAI's error types by status, for the /v1 routes.
OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                      404: "not_found_error", 409: "conflict_error", 429: "rate_limit_error",
                      503: "service_unavailable", 507: "insufficient_resources"}


def error_body(path: str, status: int, message: str) -> dict[str, Any]:
    """Ollama's {"error": "..."}; on /v1 paths OpenAI's {"error": {"message", "type", "code"}}."""
    if path.startswith("/v1/"):
        kind = OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        code = "model_not_found" if status == 404 and "model" in message else None
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return {"error": message}


def error_response(request: web.Request, status: int, message: str) -> web.Response:
    return web.json_response(error_body(request.path, status, message), status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error with a fitting status; never a traceback."""
    try:
        return await handler(request)
    except R1Error as exc:
        return error_response(request, exc.status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = {404: f"no such endpoint: {request.method} {request.path}",
                  405: f"method {request.method} is not allowed on {request.path}"}
        return error_response(request, exc.status, reason.get(exc.status, exc.reason))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(request, 500, "internal error in the r1 daemon; its log has the details")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is an empty object, as in Ollama."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"invalid JSON in request body: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(body).__name__}")
    return body


def get_str(body: dict[str, Any], *keys: str, required: bool = True) -> str | None:
    """The first of `keys` present (Ollama accepts both "model" and the older "name")."""
    for key in keys:
        if body.get(key) is not None:
            value = body[key]
            if not isinstance(value, str):
                raise BadRequest(f"field '{key}' must be a string, not {type(value).__name__}")
            return value
    if required:
        raise BadRequest(f"field '{keys[0]}' is required")
    return None


def get_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"field '{key}' must be true or false, not {json.dumps(value)}")
    return value


def start_owned_task(app: web.Application, coro: Awaitable[Any]) -> asyncio.Task:
    """Run work that must finish even if the client that asked for it goes away."""
    task = asyncio.ensure_future(coro)
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)
    return task


def _same(event: Any) -> dict[str, Any]:
    return event


async def stream_ndjson(request: web.Request, events: AsyncIterator[Any],
                        shape: Callable[[Any], dict[str, Any]] = _same) -> web.StreamResponse:
    """Ollama-style streams: one JSON object per line.

    The first event is awaited before the response starts, so an early failure still gets
    its own status code; after the first byte, errors go in-band as a final {"error"} line.
    A client that goes away closes `events` at once, so a generation stops at the next token.
    `shape` turns each event into the JSON object sent (one call, no extra generator, per token).
    """
    try:
        return await _stream_ndjson(request, events, shape)
    finally:
        if isinstance(events, AsyncGenerator):
            await events.aclose()


async def _stream_ndjson(request: web.Request, events: AsyncIterator[Any],
                         shape: Callable[[Any], dict[str, Any]]) -> web.StreamResponse:
    first = await anext(events, None)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    try:
        if first is not None:
            await response.write(json.dumps(shape(first)).encode() + b"\n")
            async for event in events:
                await response.write(json.dumps(shape(event)).encode() + b"\n")
    except R1Error as exc:
        await response.write(json.dumps({"error": str(exc)}).encode() + b"\n")
    except ConnectionResetError:
        log.debug("the client left %s %s before the end of its stream", request.method, request.path)
        return response  # nobody to finish the stream for
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error while streaming %s %s", request.method, request.path)
        await response.write(json.dumps({"error": "internal error in the r1 daemon; its log has the details"}).encode() + b"\n")
    await response.write_eof()
    return response
