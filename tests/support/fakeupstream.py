"""A fake OpenAI-compatible upstream on 127.0.0.1 (as llama.cpp's server, vLLM or Fireworks serve), for
r1's remote engines to forward to. Every request is logged in `requests` (method, path, headers, JSON
body) so tests can check what r1 sent, the Authorization header included.

  GET  /v1/models            the models it knows, each with vLLM's `max_model_len` (4096)
  GET  /health               200, as vLLM answers
  POST /v1/chat/completions  streamed (SSE, `data: [DONE]` last) or not
  POST /v1/completions       likewise, with `prompt`
  POST /v1/embeddings        8 floats per input from a hash of its text (`encoding_format` float or base64)

A model added with `add_model(name, text=...)` answers that text, one chunk per word (the word with the
space before it), then a chunk with `finish_reason` "stop" ("length" where `max_tokens` cut it short),
then, when `stream_options.include_usage` is true, a chunk with `"choices": []` and `usage`, as OpenAI
sends. prompt_tokens counts the words of all messages' content (of `prompt` on /v1/completions, of
`input` on /v1/embeddings); completion_tokens counts the chunks that carry text, reasoning or arguments.
A model name it does not know gets 404 as `fault-404` does. With `api_key` set, every request without
`Authorization: Bearer <api_key>` gets 401 as `fault-401` does.

Models that behave as named, on every POST route unless said otherwise:

  fault-401          401 {"error": {"message": "Invalid API key", "type": "invalid_request_error", ...}}
  fault-403          403, an error body of the same shape ("permission_denied")
  fault-404          404, OpenAI's "model_not_found" error body
  fault-429          429 with `Retry-After: 7` and OpenAI's "rate_limit_exceeded" error body
  fault-500          500, OpenAI's "server_error" error body
  cut-after-3        streamed: 3 content chunks of TEXT, then the connection is aborted (no finish
                     chunk, no [DONE]); not streamed: half the JSON body of a promised Content-Length,
                     then aborted
  no-first-byte      takes the request and never sends a byte: the handler sleeps until the client
                     goes away or the server stops, which aborts the connection
  reasoning-content  THINKING word by word in `delta.reasoning_content` (DeepSeek, Fireworks), then
                     ANSWER in `delta.content`; not streamed, `message.reasoning_content` and `content`
  reasoning-field    the same in `delta.reasoning` / `message.reasoning` (vLLM)
  inline-think       INLINE (`<think>THINKING</think>ANSWER`) in `content`, one chunk per word
  inline-think-N     INLINE in `content` as two chunks split at character N (0 <= N <= len(INLINE); an
                     empty piece is not sent), so a test can split the tags at every position
  slow               TEXT 20 times over, a chunk every SLOW_PAUSE; a client that leaves before the end is
                     noted in `abandoned` (what r1 must do when its own client leaves)
  tool-call          `tool_calls` with TOOL_CALL, its arguments over several chunks as OpenAI streams
                     them, `finish_reason` "tool_calls"; 400 on /v1/completions
  no-usage           TEXT, but never a usage chunk, whatever `stream_options` asks (llama-cpp-python's
                     server streams none); not streamed, usage as usual

Hostile models (HOSTILE), on every POST route, for what r1 must keep from its clients, its logs and its
database, and answers it must refuse to read; the last five send server-sent events whatever was asked:

  echo-upper         401 whose message quotes the Authorization header it got, in upper case
  echo-lower         500 whose message quotes every header it got, in lower case
  echo-headers       400 whose message quotes every header it got, as sent
  echo-midstream     one chunk of TEXT, then an in-band `error` quoting every header, case swapped
  garbage-first      a `data:` line that is not JSON, first
  garbage-late       one chunk of TEXT, then a `data:` line that is not JSON
  huge-first         a chunk of HUGE_LINE bytes on one line (more than the 512 KiB aiohttp reads as one)
  huge-late          one chunk of TEXT, then the huge line

On /v1/completions the reasoning models answer INLINE as `text` (a raw completion has no reasoning
field). /v1/embeddings embeds for every model but the fault, hostile and no-first-byte ones.

    with FakeUpstream() as upstream:
        upstream.add_model("plain", text="Hello there.")
        openai.OpenAI(base_url=upstream.url + "/v1", api_key="k", max_retries=0)
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .loopback import LoopbackServer, cut_off

MAX_MODEL_LEN = 4096
TEXT = "The quick brown fox jumps over the lazy dog."  # what the behaviour models answer
THINKING = "The user wants a sum. Two plus two is four."
ANSWER = "It is 4."
INLINE = f"<think>{THINKING}</think>{ANSWER}"
TOOL_CALL = {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}
ARGUMENT_PIECE = 5  # characters of arguments per streamed chunk
FAULTS: dict[str, tuple[int, str, str, str]] = {  # model -> (status, message, type, code)
    "fault-401": (401, "Invalid API key", "invalid_request_error", "invalid_api_key"),
    "fault-403": (403, "You are not allowed to use this model", "invalid_request_error", "permission_denied"),
    "fault-429": (429, "Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    "fault-500": (500, "The server had an error while processing your request", "server_error", "server_error"),
}
BEHAVIOURS = ("cut-after-3", "no-first-byte", "reasoning-content", "reasoning-field", "inline-think", "tool-call",
              "slow", "no-usage")
SLOW_PAUSE = 0.1  # seconds between the chunks of `slow`
HOSTILE = ("echo-upper", "echo-lower", "echo-headers", "echo-midstream", "garbage-first", "garbage-late",
           "huge-first", "huge-late")
HUGE_LINE = 1024 * 1024


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON, None when there was none
    at: float = dataclasses.field(default_factory=time.monotonic)  # when it arrived


def words(text: str) -> list[str]:
    """The chunks a text streams as: each word with the whitespace before it, so they join back to it."""
    return re.findall(r"\s*\S+", text)


def _count_words(content: Any) -> int:
    # A message's content is a string or a list of parts ({"type": "text", "text": ...}); a prompt or
    # an input is a string or a list of them.
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(_count_words(part.get("text") if isinstance(part, dict) else part) for part in content)
    return 0


def _error(status: int, message: str, kind: str, code: str | None, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": code}},
                             status=status, headers=headers)


def _not_found(model: str) -> web.Response:
    return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                  "invalid_request_error", "model_not_found")


def embedding(text: str) -> list[float]:
    """8 floats in [-1, 1) from sha256 of the text: the same text always gets the same vector."""
    digest = hashlib.sha256(text.encode()).digest()
    return [struct.unpack("<h", digest[i:i + 2])[0] / 32768 for i in range(0, 16, 2)]


class FakeUpstream(LoopbackServer):
    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.requests: list[Received] = []  # type: ignore[assignment]  # richer entries than the base's tuples
        self.api_key = api_key
        self._texts: dict[str, str] = {}  # plain model -> its answer
        self.abandoned: list[str] = []  # models whose streamed answer the client left before its end
        self._ids = 0

    def add_model(self, name: str, text: str) -> None:
        """Serve `name`, answering `text` to every prompt."""
        with self._lock:
            self._texts[name] = text

    def models(self) -> list[str]:
        """What /v1/models lists: the added models, then the behaviour models (fault-404 is unknown), each
        split of inline-think last."""
        with self._lock:
            return [*self._texts, *FAULTS, *BEHAVIOURS, *HOSTILE,
                    *(f"inline-think-{n}" for n in range(len(INLINE) + 1))]

    # -- requests (event loop thread) --

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(Received(request.method, request.path, dict(request.headers), body))
            self._ids += 1
            serial = self._ids
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API key", "invalid_request_error", "invalid_api_key")
        route = (request.method, request.path)
        if route == ("GET", "/health"):
            return web.Response()
        if route == ("GET", "/v1/models"):
            return web.json_response({"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake", "max_model_len": MAX_MODEL_LEN}
                for m in self.models()]})
        if request.path not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            return _error(404, f"no route {request.method} {request.path}", "invalid_request_error", None)
        if request.method != "POST":
            return _error(405, "use POST", "invalid_request_error", None)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _error(400, "a JSON body with `model` is required", "invalid_request_error", None)
        model = body["model"]
        if model in FAULTS:
            status, message, kind, code = FAULTS[model]
            return _error(status, message, kind, code, {"Retry-After": "7"} if status == 429 else None)
        if model in HOSTILE:
            return await self._hostile(request, model)
        with self._lock:
            known = model in self._texts or model in BEHAVIOURS or re.fullmatch(r"inline-think-\d+", model)
        if not known:
            return _not_found(model)
        if model == "no-first-byte":
            while not self._closing and request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.02)
            if request.transport is not None:
                request.transport.abort()  # the server stops: still not a byte
            return web.Response(status=503)  # nobody reads it
        if request.path == "/v1/embeddings":
            return self._embeddings(model, body)
        return await self._generate(request, body, serial)

    def _embeddings(self, model: str, body: dict[str, Any]) -> web.Response:
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return _error(400, "`input` must be a string or a list of strings", "invalid_request_error", None)
        data = []
        for i, text in enumerate(texts):
            vector: Any = embedding(text)
            if body.get("encoding_format") == "base64":  # the openai client asks for this by default
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = _count_words(texts)
        return web.json_response({"object": "list", "data": data, "model": model,
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _pieces(self, model: str, chat: bool, limit: int | None) -> tuple[list[tuple[str, Any]], str] | None:
        """What the model answers, as (field, value) pieces, and its finish_reason; None for 'not here'.
        The fields: content, reasoning_content, reasoning, or tool_call (a piece of arguments)."""
        if model == "tool-call":
            if not chat:
                return None
            args = TOOL_CALL["function"]["arguments"]
            return [("tool_call", args[i:i + ARGUMENT_PIECE]) for i in range(0, len(args), ARGUMENT_PIECE)], "tool_calls"
        if model in ("reasoning-content", "reasoning-field") and chat:
            field = "reasoning_content" if model == "reasoning-content" else "reasoning"
            return [(field, w) for w in words(THINKING)] + [("content", w) for w in words(ANSWER)], "stop"
        if model.startswith("reasoning-") or model == "inline-think":
            return [("content", w) for w in words(INLINE)], "stop"
        if m := re.fullmatch(r"inline-think-(\d+)", model):
            at = int(m[1])
            return [("content", p) for p in (INLINE[:at], INLINE[at:]) if p], "stop"
        with self._lock:
            text = self._texts.get(model, TEXT)
        pieces = [("content", w) for w in words(" ".join([text] * (20 if model == "slow" else 1)))]
        if limit is not None and limit < len(pieces):
            return pieces[:limit], "length"
        return pieces, "stop"

    async def _generate(self, request: web.Request, body: dict[str, Any], serial: int) -> web.StreamResponse:
        chat = request.path == "/v1/chat/completions"
        model = body["model"]
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        answer = self._pieces(model, chat, limit if isinstance(limit, int) else None)
        if answer is None:
            return _error(400, "tool calls need /v1/chat/completions", "invalid_request_error", None)
        pieces, finish = answer
        if chat:
            prompt_tokens = sum(_count_words(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict))
        else:
            prompt_tokens = _count_words(body.get("prompt"))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
                 "total_tokens": prompt_tokens + len(pieces)}
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{serial}",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()), "model": model}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and model != "no-usage"
            return await self._stream(request, head, chat, pieces, finish, usage if include_usage else None)
        if chat:
            content = "".join(v for f, v in pieces if f == "content")
            message: dict[str, Any] = {"role": "assistant", "content": content or None}
            for field in ("reasoning_content", "reasoning"):
                if thinking := "".join(v for f, v in pieces if f == field):
                    message[field] = thinking
            if finish == "tool_calls":
                message["tool_calls"] = [TOOL_CALL]
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": "".join(v for _, v in pieces), "finish_reason": finish, "logprobs": None}
        reply = {**head, "object": "chat.completion" if chat else "text_completion", "choices": [choice], "usage": usage}
        if model == "cut-after-3":
            return await self._cut_body(request, json.dumps(reply).encode())
        return web.json_response(reply)

    async def _hostile(self, request: web.Request, model: str) -> web.StreamResponse:
        seen = "; ".join(f"{name}: {value}" for name, value in request.headers.items())
        if model == "echo-upper":
            return _error(401, f"Invalid API key: {request.headers.get('Authorization', '').upper()}",
                          "invalid_request_error", "invalid_api_key")
        if model == "echo-lower":
            return _error(500, f"internal error serving {seen.lower()}", "server_error", None)
        if model == "echo-headers":
            return _error(400, f"bad request with headers {seen}", "invalid_request_error", None)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        head = {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model}
        if model.endswith("-late") or model == "echo-midstream":
            await _send(response, {**head, "choices": [{"index": 0, "delta": {"content": TEXT},
                                                         "finish_reason": None}]})
        if model.startswith("garbage-"):
            await response.write(b"data: {this is not JSON\n\n")
        elif model.startswith("huge-"):
            await _send(response, {**head, "choices": [{"index": 0, "delta": {"content": "x" * HUGE_LINE}}]})
        else:
            await _send(response, {"error": {"message": f"upstream failed serving {seen.swapcase()}",
                                             "type": "server_error"}})
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _stream(self, request: web.Request, head: dict[str, Any], chat: bool, pieces: list[tuple[str, Any]],
                      finish: str, usage: dict[str, int] | None) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        cut = 3 if head["model"] == "cut-after-3" else None
        extra = {"usage": None} if usage is not None else {}  # OpenAI sends usage: null until the last chunk
        try:
            for event in _events(chat, pieces, finish):
                if cut is not None and event.get("delta", {}).get("content", event.get("text")):
                    if cut == 0:
                        await cut_off(request, "fakeupstream")
                    cut -= 1
                await _send(response, {**head, "choices": [{"index": 0, **event, "logprobs": None}], **extra})
                if head["model"] == "slow":
                    await asyncio.sleep(SLOW_PAUSE)
            if usage is not None:
                await _send(response, {**head, "choices": [], "usage": usage})
            await response.write(b"data: [DONE]\n\n")
        except ConnectionError:  # the client went away (or we cut it off)
            if cut is None:
                with self._lock:
                    self.abandoned.append(head["model"])
        return response

    async def _cut_body(self, request: web.Request, body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        try:
            await response.write(body[:len(body) // 2])
            await cut_off(request, "fakeupstream")
        except ConnectionError:
            pass
        return response


def _events(chat: bool, pieces: list[tuple[str, Any]], finish: str) -> Iterator[dict[str, Any]]:
    """Each chunk's choice, less its index: OpenAI's deltas on chat (a first one with the role), `text`
    on completions, then one with the finish_reason."""
    if not chat:
        for _, value in pieces:
            yield {"text": value, "finish_reason": None}
        yield {"text": "", "finish_reason": finish}
        return
    if finish == "tool_calls":
        first = {k: v for k, v in TOOL_CALL.items() if k != "function"}
        yield {"delta": {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, **first, "function": {"name": TOOL_CALL["function"]["name"], "arguments": ""}}]},
            "finish_reason": None}
    else:
        yield {"delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    for field, value in pieces:
        if field == "tool_call":
            yield {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": value}}]}, "finish_reason": None}
        else:
            yield {"delta": {field: value}, "finish_reason": None}
    yield {"delta": {}, "finish_reason": finish}


async def _send(response: web.StreamResponse, chunk: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
