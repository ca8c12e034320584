"""Ollama's /api/generate, /api/chat and /api/embed: request shapes in, NDJSON chunks out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..config import ConfigError, parse_duration
from ..errors import BadRequest
from ..generation import Chunk, Final, Request, collect, embed, generate
from ..runner.options import check_options
from .context import SCHEDULER, STORE
from .http import get_bool, get_str, read_json, stream_ndjson

routes = web.RouteTableDef()

Json = dict[str, Any]


_second: list[Any] = [-1, ""]  # the last whole second formatted: strftime is costly once per token


def created_at() -> str:
    now = time.time_ns()
    second, nanos = divmod(now, 1_000_000_000)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{nanos:09d}Z"


def keep_alive(body: Json) -> float | None:
    """Seconds from Ollama's keep_alive ("5m", 300, "-1", 0); None: the daemon's default."""
    value = body.get("keep_alive")
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value, "keep_alive")
        except ConfigError as exc:
            raise BadRequest(str(exc)) from exc
    raise BadRequest(f"field 'keep_alive' must be a duration like \"5m\" or a number of seconds, not {value!r}")


def think(body: Json) -> bool | None:
    value = body.get("think")
    if value is None or isinstance(value, bool):
        return value
    if value in ("low", "medium", "high"):  # gpt-oss style levels: on
        return True
    raise BadRequest(f"field 'think' must be true or false, not {value!r}")


def output_format(body: Json) -> str | dict[str, Any] | None:
    value = body.get("format")
    if value in (None, ""):
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise BadRequest(f"field 'format' must be \"json\" or a JSON schema object, not {value!r}")


def messages(body: Json, model: str) -> list[Json]:
    value = body.get("messages")
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("field 'messages' must be a list of {role, content} objects")
    checked = []
    for n, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{n}] must be an object with a string 'role'")
        content = message.get("content", "")
        if not isinstance(content, str):
            raise BadRequest(f"messages[{n}].content must be a string")
        if message.get("images"):
            raise BadRequest(f"{model} cannot see images: r1 runs text models only so far")
        # Past thinking is not sent back to the model, as Ollama does.
        checked.append({k: v for k, v in message.items() if k not in ("thinking", "images")} | {"content": content})
    return checked


def tools(body: Json) -> list[Any] | None:
    value = body.get("tools")
    if value is not None and not isinstance(value, list):
        raise BadRequest("field 'tools' must be a list")
    return value or None


def parse_request(body: Json, chat: bool) -> Request:
    model = get_str(body, "model", "name")
    assert model is not None
    return Request(
        model=model,
        prompt=None if chat else get_str(body, "prompt", required=False),
        messages=messages(body, model) if chat else None,
        system=None if chat else get_str(body, "system", required=False),
        template=get_str(body, "template", required=False),
        raw=False if chat else get_bool(body, "raw", False),
        format=output_format(body),
        options=check_options(body.get("options")),
        think=think(body),
        keep_alive=keep_alive(body),
        tools=tools(body) if chat else None,
    )


def shape_generate(model: str, item: Chunk | Final) -> Json:
    if isinstance(item, Chunk):
        out: Json = {"model": model, "created_at": created_at(), "response": item.content}
        if item.thinking:
            out["thinking"] = item.thinking
        out["done"] = False
        return out
    return {"model": model, "created_at": created_at(), "response": "", "done": True, **item.stats()}


def shape_chat(model: str, item: Chunk | Final) -> Json:
    if isinstance(item, Chunk):
        message: Json = {"role": "assistant", "content": item.content}
        if item.thinking:
            message["thinking"] = item.thinking
        return {"model": model, "created_at": created_at(), "message": message, "done": False}
    message = {"role": "assistant", "content": ""}
    if item.tool_calls:
        message["tool_calls"] = list(item.tool_calls)
    return {"model": model, "created_at": created_at(), "message": message, "done": True, **item.stats()}


async def _respond(request: web.Request, chat: bool) -> web.StreamResponse:
    body = await read_json(request)
    parsed = parse_request(body, chat)
    shape: Callable[[str, Chunk | Final], Json] = shape_chat if chat else shape_generate
    items = generate(request.app[STORE], request.app[SCHEDULER], parsed)
    if get_bool(body, "stream", True):
        return await stream_ndjson(request, items, lambda item: shape(parsed.model, item))
    reasoning, text, last = await collect(items)
    final = shape(parsed.model, last)
    target = final["message"] if chat else final
    target["response" if not chat else "content"] = text
    if reasoning:
        target["thinking"] = reasoning
    return web.json_response(final)


@routes.post("/api/generate")
async def generate_route(request: web.Request) -> web.StreamResponse:
    return await _respond(request, chat=False)


@routes.post("/api/chat")
async def chat_route(request: web.Request) -> web.StreamResponse:
    return await _respond(request, chat=True)


@routes.post("/api/embeddings")
async def embeddings_route(request: web.Request) -> web.Response:
    """Ollama's older, single-text endpoint: {"model", "prompt"} -> {"embedding"}."""
    body = await read_json(request)
    model = get_str(body, "model", "name")
    prompt = get_str(body, "prompt", required=False) or ""
    assert model is not None
    result = await embed(request.app[STORE], request.app[SCHEDULER], model, [prompt] if prompt else [],
                         check_options(body.get("options")), keep_alive(body))
    return web.json_response({"embedding": result["embeddings"][0] if result["embeddings"] else []})


@routes.post("/api/embed")
async def embed_route(request: web.Request) -> web.Response:
    body = await read_json(request)
    model = get_str(body, "model", "name")
    assert model is not None
    value = body.get("input", [])
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not all(isinstance(v, str) for v in inputs):
        raise BadRequest("field 'input' must be a string or a list of strings")
    result = await embed(request.app[STORE], request.app[SCHEDULER], model, inputs,
                         check_options(body.get("options")), keep_alive(body))
    return web.json_response(result)
