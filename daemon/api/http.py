"""HTTP plumbing shared by the routes: JSON bodies, errors, NDJSON and SSE streams."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from aiohttp import web

from ..errors import BadRequest, R1Error, disk_full, is_disk_full
from ..metadata import MetadataError
from ..metrics import ANSWER, PROMPT, REQUEST_FACTS, TEXT_FACTS, note
from ..request_log import error_text
from .context import CLOSING, METRICS, REQUEST_LOG, SETTINGS, TASKS
from .peer import Peer, peer_of

log = logging.getLogger(__name__)
access_log = logging.getLogger("r1.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# OpenAI's error types by status, for the /v1 routes.
OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                      404: "not_found_error", 409: "conflict_error", 429: "rate_limit_error",
                      503: "service_unavailable", 507: "insufficient_resources"}


# Anthropic's error types by status, for /v1/messages; other statuses: invalid_request_error or api_error.
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                         503: "overloaded_error", 529: "overloaded_error"}


def error_body(path: str, status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """Ollama's {"error": "..."}; on /v1 paths OpenAI's {"error": {"message", "type", "code"}}, and on
    Anthropic's /v1/messages its {"type": "error", "error": {"type", "message"}}."""
    dialect = dialect_of(path)
    if dialect == "anthropic":
        kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if dialect == "openai":
        kind = OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return {"error": message}


def error_response(request: web.Request, status: int, message: str, code: str | None = None) -> web.Response:
    return web.json_response(error_body(request.path, status, message, code), status=status)


# Errors from below the API that are not R1Errors (they know nothing of HTTP), by the status they answer with.
PLAIN_ERRORS: dict[type[Exception], int] = {MetadataError: 400}


def client_error(exc: Exception) -> tuple[int, str | None]:
    """The status and code of an R1Error or of one of PLAIN_ERRORS."""
    if isinstance(exc, R1Error):
        return exc.status, exc.code
    return next(status for kind, status in PLAIN_ERRORS.items() if isinstance(exc, kind)), None


CANCELLED = 499  # the status of a request whose client went away before its answer was whole, as nginx writes it


class ClientGone(ConnectionResetError):
    """A write found the client's connection closed: the request ends there, with the response begun."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("the client closed its connection")
        self.response = response


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One log line per request (route, status, duration, and the model's facts), its count, and its
    entry in the request log (queued, written later: nothing here waits for the database)."""
    logging = request.app[REQUEST_LOG].enabled
    keep_text = logging and request.app[SETTINGS].log_prompts
    facts: dict[str, Any] = {ANSWER: []} if keep_text else {}
    token = REQUEST_FACTS.set(facts)
    # Now: a short-lived client (an `r1` command) may be gone once it has its answer.
    peer = peer_of(request) if logging else None
    at = time.time()
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except asyncio.CancelledError:  # aiohttp cancels the handler of a client that closed its connection
        status = CANCELLED
        raise
    except ClientGone as gone:  # noticed by a write before the cancellation came
        status = CANCELLED
        return gone.response
    finally:
        REQUEST_FACTS.reset(token)
        duration = time.perf_counter() - started
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].requests.inc(route=route, status=str(status))
        extra = "".join(f" {key}={value}" for key, value in facts.items() if value is not None and key not in TEXT_FACTS)
        why = ""
        if status == CANCELLED:
            why = " (the daemon is stopping)" if request.app[CLOSING].is_set() else " (client went away)"
        access_log.info("%s %s %d %.3fs%s%s", request.method, request.path, status, duration, extra, why)
        if peer is not None:
            request.app[REQUEST_LOG].add(log_entry(request, peer, route, status, at, duration, facts, keep_text))


def _whole_prompt(facts: dict[str, Any]) -> int | None:
    """The prompt's tokens, those a slot held from an earlier turn included (as OpenAI's usage counts them)."""
    evaluated = facts.get("prompt_tokens")
    return None if evaluated is None else evaluated + (facts.get("prompt_cached") or 0)


# Ollama's own routes; other /api/ routes are r1's (usage, log, import, remotes, tcp...).
OLLAMA_ROUTES = frozenset({"/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/tags", "/api/show",
                           "/api/create", "/api/copy", "/api/delete", "/api/pull", "/api/push", "/api/ps",
                           "/api/version", "/api/blobs/{digest}"})


def dialect_of(route: str) -> str:
    """Whose API a route (or a path) belongs to: the request log's dialect, and the shape of its errors."""
    if route == "/v1/messages" or route.startswith("/v1/messages/"):
        return "anthropic"
    if route.startswith("/v1/"):
        return "openai"
    return "ollama" if route in OLLAMA_ROUTES else "r1"


def log_entry(request: web.Request, peer: Peer, route: str, status: int, at: float, duration: float,
              facts: dict[str, Any], keep_text: bool) -> dict[str, Any]:
    """A request's row in the request log. Thinking tokens: the runner's text frames (about one a token) that
    were all thinking; null for requests that generate nothing."""
    answer = facts.get(ANSWER)
    return {"time": at, "client_kind": peer.kind, "client": peer.client, "client_uid": peer.uid,
            "client_pid": peer.pid, "dialect": dialect_of(route), "method": request.method, "route": route,
            "model": facts.get("model"), "status": status, "prompt_tokens": _whole_prompt(facts),
            "output_tokens": facts.get("tokens"), "thinking_tokens": facts.get("thinking_tokens"), "first_token_s": facts.get("first_token_s"),
            "tokens_per_s": facts.get("tokens_per_s"), "duration_s": round(duration, 6), "cost": facts.get("cost"),
            "error_text": error_text(status, facts.get("error"), keep_text),
            "prompt": facts.get(PROMPT) if keep_text else None,
            "answer": "".join(answer) if keep_text and answer else None}


INTERNAL = "internal error in the r1 daemon; its log has the details"


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error with a fitting status; never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = {404: f"no such endpoint: {request.method} {request.path}",
                  405: f"method {request.method} is not allowed on {request.path}"}.get(exc.status, exc.reason)
        note(error=reason)
        return error_response(request, exc.status, reason)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        status, code, message = _failure(request, exc)
        response = error_response(request, status, message, code)
        response.headers.update(getattr(exc, "headers", {}))
        return response


def _failure(request: web.Request, exc: Exception) -> tuple[int, str | None, str]:
    """What a request that failed with `exc` answers, before its first byte or in band after it (noted for the
    logs): a client's error as it is, a full disk as its 507 wherever the write was, anything else a 500 whose
    details go to the log."""
    exc = _disk_full_error(request, exc) or exc
    if isinstance(exc, (R1Error, *PLAIN_ERRORS)):
        status, code = client_error(exc)
        message = str(exc)
    else:
        log.error("unexpected error in %s %s", request.method, request.path, exc_info=exc)
        status, code, message = 500, None, INTERNAL
    note(error=message)
    return status, code, message


def _disk_full_error(request: web.Request, exc: BaseException) -> R1Error | None:
    """The 507 that `exc` means when it is a write finding the disk full (logged with what found it), else None."""
    if isinstance(exc, R1Error) or not is_disk_full(exc):
        return None
    log.warning("%s %s found the disk full: %s", request.method, request.path, exc)
    return disk_full(request.app[SETTINGS].home)


# Deeper bodies are refused at the door: no real request nests this far, and what reads a body later
# (json.dumps into the runner's frame, the request log, a chat template) recurses once per level.
MAX_JSON_DEPTH = 64
TOO_DEEP = f"request body nests more than {MAX_JSON_DEPTH} levels of arrays and objects; send a flatter body"


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is an empty object, as in Ollama. Only JSON:
    NaN, Infinity and numbers too large for a float are refused, and so is nesting beyond MAX_JSON_DEPTH."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except RecursionError as exc:
        raise BadRequest(TOO_DEEP) from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise BadRequest(f"invalid JSON in request body: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(body).__name__}")
    if _depth_over(body, MAX_JSON_DEPTH):
        raise BadRequest(TOO_DEEP)
    return body


def _not_json(name: str) -> Any:
    raise BadRequest(f"invalid JSON in request body: {name} is not a JSON number; send a finite number or null")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BadRequest(f"invalid JSON in request body: the number {text[:40]} is too large for a float")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest deeper than `limit` in `value`, found without recursion."""
    level = [value]
    for _ in range(limit):
        level = [child for node in level
                 for child in (node.values() if isinstance(node, dict) else node) if isinstance(child, (dict, list))]
        if not level:
            return False
    return True


def start_owned_task(app: web.Application, coro: Awaitable[Any]) -> asyncio.Task:
    """Run work that must finish even if the client that asked for it goes away."""
    task = asyncio.ensure_future(coro)
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)
    return task


def must_finish(handler: Handler) -> Handler:
    """For a route whose steps must all be done once begun (a file, then the row that names it): the handler
    runs in a task the app owns, so a client that leaves stops only the wait for the answer, not the work."""
    @functools.wraps(handler)
    async def finishing(request: web.Request) -> web.StreamResponse:
        work = start_owned_task(request.app, handler(request))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            work.add_done_callback(functools.partial(_finished_alone, request.method, request.path))
            raise

    return finishing


def _finished_alone(method: str, path: str, work: asyncio.Task) -> None:
    """How work that outlived its client ended: nobody else will read its result."""
    if work.cancelled():
        return
    exc = work.exception()
    if exc is None:
        log.info("%s %s finished after its client went away", method, path)
    elif isinstance(exc, (R1Error, ConnectionError, *PLAIN_ERRORS)):  # a refusal, or a body that never came
        log.info("%s %s failed after its client went away: %s", method, path, exc)
    else:
        log.error("%s %s failed after its client went away", method, path, exc_info=exc)


class Framing(NamedTuple):
    """How a stream puts JSON objects on the wire: Ollama's NDJSON or OpenAI's server-sent events."""

    content_type: str
    frame: Callable[[dict[str, Any]], bytes]
    trailer: bytes = b""  # after the last event, unless an error ended the stream


NDJSON = Framing("application/x-ndjson", lambda obj: json.dumps(obj).encode() + b"\n")
SSE = Framing("text/event-stream", lambda obj: b"data: " + json.dumps(obj).encode() + b"\n\n", b"data: [DONE]\n\n")


def sse_event(name: str, data: Any) -> bytes:
    """One named server-sent event: its name on the `event:` line, its JSON on `data:`."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


# Streams of named events (Anthropic's, the Responses API's, /api/events): an error after the first byte is
# an `error` event, and they end without a trailer.
NAMED_SSE = Framing("text/event-stream", lambda body: sse_event("error", body))


def new_id(prefix: str) -> str:
    """An answer's, a message's or a call's id, as OpenAI and Anthropic write them ("chatcmpl-…", "toolu_…")."""
    return prefix + secrets.token_hex(12)


async def stream_ndjson(request: web.Request, events: AsyncIterator[Any],
                        shape: Callable[[Any], dict[str, Any]] = lambda event: event) -> web.StreamResponse:
    """Ollama-style streams: one JSON object per line; `shape` makes each event that object."""
    return await stream_events(request, events, lambda event: NDJSON.frame(shape(event)), NDJSON)


async def stream_events(request: web.Request, events: AsyncIterator[Any], encode: Callable[[Any], bytes],
                        framing: Framing, headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """Stream `events`, each turned into bytes by `encode` (one call per token, no extra generator).

    The first event is awaited before the response starts, so an early failure still gets
    its own status code; after the first byte, errors go in-band as a last framed error.
    A client that goes away, before the first event or after, closes `events` at once (aiohttp cancels
    its handler, or a write fails first: ClientGone), so its generation stops within a batch step.
    """
    try:
        return await _stream(request, events, encode, framing, headers or {})
    finally:
        if isinstance(events, AsyncGenerator):
            await events.aclose()


async def _stream(request: web.Request, events: AsyncIterator[Any], encode: Callable[[Any], bytes],
                  framing: Framing, headers: Mapping[str, str]) -> web.StreamResponse:
    first = await anext(events, None)
    response = web.StreamResponse(headers={"Content-Type": framing.content_type, "Cache-Control": "no-cache",
                                           **headers})
    try:
        await response.prepare(request)
        try:
            if first is not None:
                await response.write(encode(first))
                async for event in events:
                    await response.write(encode(event))
            if framing.trailer:
                await response.write(framing.trailer)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            status, code, message = _failure(request, exc)
            await response.write(framing.frame(error_body(request.path, status, message, code)))
        await response.write_eof()
    except ConnectionResetError as exc:  # nobody to finish the stream for
        raise ClientGone(response) from exc
    return response
