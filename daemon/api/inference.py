"""Ollama's /api/generate, /api/chat, /api/embed and /api/embeddings: request shapes in, NDJSON chunks out."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ..errors import BadRequest
from ..embedding import embed
from ..generation import Chunk, Final, Request, Whole
from ..options.check import check_options
from .context import CORE
from .fields import (context, embed_request, get_bool, get_str, images, images_within_bounds, keep_alive, logprobs,
                     messages, output_format, required_str, think, think_level, tools)
from .http import NDJSON, read_json
from .respond import respond

routes = web.RouteTableDef()

Json = dict[str, Any]


_second: list[Any] = [-1, ""]  # the last whole second formatted: strftime is costly once per token


def created_at() -> str:
    now = time.time_ns()
    second, nanos = divmod(now, 1_000_000_000)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{nanos:09d}Z"


def parse_request(body: Json, chat: bool) -> Request:
    model = required_str(body, "model", "name")
    if not chat and body.get("raw") is True and any(body.get(k) for k in ("template", "system", "context")):
        raise BadRequest("raw mode does not support template, system, or context")  # Ollama's words
    return Request(
        model=model,
        prompt=None if chat else get_str(body, "prompt"),
        messages=messages(body) if chat else None,
        system=None if chat else get_str(body, "system"),
        template=get_str(body, "template"),
        raw=False if chat else get_bool(body, "raw", False),
        format=output_format(body),
        options=check_options(body.get("options")),
        think=think(body),
        effort=think_level(body),
        keep_alive=keep_alive(body),
        tools=tools(body) if chat else None,
        suffix=None if chat else get_str(body, "suffix") or None,  # "" is no suffix, as in Ollama
        logprobs=logprobs(body),
        context=None if chat else context(body),
        images=None if chat or not body.get("images") else generate_images(body["images"]),
    )


def generate_images(value: Any) -> list[str]:
    checked = images(value, "images")
    images_within_bounds(checked)
    return checked


class GenerateShape:
    """/api/generate's NDJSON chunks, and its whole answer."""

    framing = NDJSON
    stream_default = True

    def __init__(self, body: Json, parsed: Request) -> None:
        self.model = parsed.model

    def chunk(self, item: Chunk | Final) -> Json:
        if isinstance(item, Chunk):
            out: Json = {"model": self.model, "created_at": created_at(), "response": item.content}
            if item.thinking:
                out["thinking"] = item.thinking
            out["done"] = False
            return out
        out = {"model": self.model, "created_at": created_at(), "response": "", "done": True, **item.stats()}
        if item.context is not None:
            out["context"] = list(item.context)
        return out

    def event(self, item: Chunk | Final) -> bytes:
        out = self.chunk(item)
        if isinstance(item, Chunk) and item.logprobs:
            out["logprobs"] = list(item.logprobs)
        return NDJSON.frame(out)

    def answer(self, whole: Whole) -> Json:
        out = self.chunk(whole.final)
        self.fill(out, whole.thinking, whole.content)
        if whole.logprobs:
            out["logprobs"] = whole.logprobs
        return out

    def fill(self, out: Json, thinking: str, content: str) -> None:
        """Put the whole answer's text in the last chunk."""
        out["response"] = content
        if thinking:
            out["thinking"] = thinking


class ChatShape(GenerateShape):
    """/api/chat's: the text goes in `message`, with the tool calls the answer made."""

    def chunk(self, item: Chunk | Final) -> Json:
        if isinstance(item, Chunk):
            message: Json = {"role": "assistant", "content": item.content}
            if item.thinking:
                message["thinking"] = item.thinking
            return {"model": self.model, "created_at": created_at(), "message": message, "done": False}
        message = {"role": "assistant", "content": ""}
        if item.tool_calls:
            message["tool_calls"] = list(item.tool_calls)
        return {"model": self.model, "created_at": created_at(), "message": message, "done": True, **item.stats()}

    def fill(self, out: Json, thinking: str, content: str) -> None:
        out["message"]["content"] = content
        if thinking:
            out["message"]["thinking"] = thinking


@routes.post("/api/generate")
async def generate_route(request: web.Request) -> web.StreamResponse:
    return await respond(request, lambda body: parse_request(body, chat=False), GenerateShape)


@routes.post("/api/chat")
async def chat_route(request: web.Request) -> web.StreamResponse:
    return await respond(request, lambda body: parse_request(body, chat=True), ChatShape)


@routes.post("/api/embeddings")
async def embeddings_route(request: web.Request) -> web.Response:
    """Ollama's older, single-text endpoint: {"model", "prompt"} -> {"embedding"}; r1 reads truncate
    and dimensions here too, as on /api/embed."""
    body = await read_json(request)
    prompt = get_str(body, "prompt") or ""
    parsed = embed_request(body, required_str(body, "model", "name"), [prompt] if prompt else [])
    result = await embed(request.app[CORE], parsed, request.path)
    return web.json_response({"embedding": result["embeddings"][0] if result["embeddings"] else []})


@routes.post("/api/embed")
async def embed_route(request: web.Request) -> web.Response:
    body = await read_json(request)
    model = required_str(body, "model", "name")
    value = body.get("input", [])
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not all(isinstance(v, str) for v in inputs):
        raise BadRequest("field 'input' must be a string or a list of strings")
    return web.json_response(await embed(request.app[CORE], embed_request(body, model, inputs), request.path))
