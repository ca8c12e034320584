"""Requests and streamed answers in a remote engine's dialect: OpenAI's chat and completions (server-sent
events) or Ollama's chat and generate (NDJSON). Answers come back as `Event`s: thinking and content as
they arrive, then one end with the finish reason, the upstream's token counts and any tool calls."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..errors import BadGateway, BadRequest, GatewayTimeout

# Ollama options with an OpenAI request field of their own; the sampling knobs OpenAI lacks go as the
# extra fields vLLM, llama.cpp's server and most providers read, only when they were set.
OPENAI_FIELDS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "stop": "stop",
                 "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
                 "top_k": "top_k", "min_p": "min_p", "repeat_penalty": "repetition_penalty"}


@dataclass
class Event:
    thinking: str = ""
    content: str = ""
    end: End | None = None


@dataclass
class End:
    reason: str = "stop"  # Ollama's done_reason: "stop" or "length"
    prompt_tokens: int | None = None  # None: the upstream did not say
    output_tokens: int | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # Ollama's shape


@dataclass(frozen=True)
class Call:
    """What to send: a path under the remote's base URL and a JSON body."""

    path: str
    body: dict[str, Any]


def openai_call(model: str, messages: list[dict[str, Any]] | None, prompt: str | None, options: dict[str, Any],
                fmt: str | dict[str, Any] | None, tools: list[Any] | None) -> Call:
    """A streamed chat completion for `messages`, or a text completion for a raw `prompt`."""
    body: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True}}
    for option, name in OPENAI_FIELDS.items():
        if options.get(option) is not None:
            body[name] = options[option]
    if (limit := options.get("num_predict")) is not None and limit >= 0:
        body["max_tokens"] = limit
    if fmt == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": fmt}}
    if messages is None:
        return Call("/completions", {**body, "prompt": prompt or ""})
    if tools:
        body["tools"] = tools
    return Call("/chat/completions", {**body, "messages": openai_messages(messages)})


def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama's messages as OpenAI's: tool calls get ids (arguments as JSON text), and a tool's result
    answers the earliest call of its name still unanswered."""
    out: list[dict[str, Any]] = []
    unanswered: list[tuple[str, str]] = []  # (id, function name)
    for message in messages:
        role = message.get("role")
        item: dict[str, Any] = {"role": role, "content": message.get("content") or ""}
        if role == "assistant" and message.get("tool_calls"):
            calls: list[dict[str, Any]] = []
            for call in message["tool_calls"]:
                function = call.get("function", {})
                call_id = call.get("id") or f"call_{len(out)}_{len(calls)}"
                arguments = function.get("arguments", {})
                calls.append({"id": call_id, "type": "function", "function": {
                    "name": function.get("name", ""),
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}})
                unanswered.append((call_id, function.get("name", "")))
            item["tool_calls"] = calls
        elif role == "tool":
            name = message.get("tool_name") or message.get("name")
            match = next((c for c in unanswered if name is None or c[1] == name), None)
            if match is None:
                raise BadRequest("a tool message answers no tool call of an earlier assistant message; "
                                 "remote engines need the call it answers")
            unanswered.remove(match)
            item["tool_call_id"] = match[0]
        out.append(item)
    return out


def ollama_call(model: str, messages: list[dict[str, Any]] | None, prompt: str | None, *, system: str | None,
                raw: bool, options: dict[str, Any], fmt: str | dict[str, Any] | None, tools: list[Any] | None,
                think: bool | None) -> Call:
    body: dict[str, Any] = {"model": model, "stream": True, "options": options}
    if fmt is not None:
        body["format"] = fmt
    if think is not None:
        body["think"] = think
    if messages is not None:
        return Call("/api/chat", {**body, "messages": messages, **({"tools": tools} if tools else {})})
    return Call("/api/generate", {**body, "prompt": prompt or "", "raw": raw, **({"system": system} if system else {})})


async def _lines(response: aiohttp.ClientResponse, remote: str) -> AsyncIterator[bytes]:
    try:
        async for line in response.content:
            yield line
    except TimeoutError as exc:
        raise GatewayTimeout(f"remote {remote} sent nothing more of its answer for longer than "
                             "R1_REMOTE_FIRST_BYTE_TIMEOUT") from exc
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        raise BadGateway(f"remote {remote} broke off its answer ({type(exc).__name__})") from exc


async def openai_events(response: aiohttp.ClientResponse, remote: str) -> AsyncGenerator[Event, None]:
    """Server-sent events of a chat or text completion. Thinking comes as `reasoning_content` (DeepSeek,
    Fireworks) or `reasoning` (vLLM and others); inline <think> tags stay in the content for the caller."""
    end = End()
    calls: dict[int, dict[str, str]] = {}
    finished = False
    async for line in _lines(response, remote):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            finished = True
            break
        chunk = json.loads(data)
        if "error" in chunk:
            raise BadGateway(f"remote {remote} failed mid-answer: {chunk['error']}")
        if usage := chunk.get("usage"):
            end.prompt_tokens, end.output_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            thinking = delta.get("reasoning_content") or delta.get("reasoning") or ""
            content = delta.get("content") or choice.get("text") or ""
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call.get("index", 0), {"name": "", "arguments": ""})
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                end.reason = "length" if choice["finish_reason"] == "length" else "stop"
            if thinking or content:
                yield Event(thinking, content)
    if not finished:
        raise BadGateway(f"remote {remote} ended its answer without finishing it")
    end.tool_calls = [{"function": {"name": c["name"], "arguments": _arguments(c["arguments"], remote)}}
                      for _, c in sorted(calls.items())]
    yield Event(end=end)


def _arguments(text: str, remote: str) -> dict[str, Any]:
    try:
        arguments = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise BadGateway(f"remote {remote} sent tool call arguments that are not JSON: {text[:200]!r}") from exc
    return arguments if isinstance(arguments, dict) else {"value": arguments}


async def ollama_events(response: aiohttp.ClientResponse, remote: str) -> AsyncGenerator[Event, None]:
    """NDJSON of Ollama's /api/chat or /api/generate."""
    async for line in _lines(response, remote):
        if not line.strip():
            continue
        item = json.loads(line)
        if "error" in item:
            raise BadGateway(f"remote {remote} failed mid-answer: {item['error']}")
        message = item.get("message") or {}
        thinking = message.get("thinking") or item.get("thinking") or ""
        content = message.get("content") or item.get("response") or ""
        if thinking or content:
            yield Event(thinking, content)
        if item.get("done"):
            yield Event(end=End("length" if item.get("done_reason") == "length" else "stop",
                                item.get("prompt_eval_count"), item.get("eval_count"),
                                list(message.get("tool_calls") or [])))
            return
    raise BadGateway(f"remote {remote} ended its answer without finishing it")
