"""OpenAI's Responses API (/v1/responses): a third dialect over the same generation core.

A request's `input` items (messages, function calls and their outputs) become the chat
messages chat completions would send (openai.py's helpers check them), `instructions` the
system message first; `tools` are response_tools.py's; the answer is shaped by response_events.py.
Responses are kept in r1.db (stored_responses.py) for R1_RESPONSES_TTL (unless `store: false`) so
the next request can continue the conversation with `previous_response_id`; GET and DELETE
/v1/responses/{id} read and drop them.
Fields r1 cannot honour, where they would change the answer, are a 400 that names them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..errors import BadRequest, NotFound, is_disk_full
from ..generation import Request
from ..stored_responses import StoredResponse, StoredResponses
from .context import SETTINGS, STORED_RESPONSES
from .fields import FieldNames, data_url_image, forced_format, get_bool, get_str, keep_alive, required_str, think
from .http import read_json
from .openai import chat_messages, effort, effort_level, format_of, sampling_options
from .respond import serve
from .response_events import ResponseShape
from .response_tools import NOTE_HEADER, ResponseTools, flat_name, response_tools

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

Json = dict[str, Any]

FIELDS = {"temperature": "temperature", "top_p": "top_p", "max_output_tokens": "num_predict"}  # -> Ollama options
ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = {"input_text": "text", "output_text": "text", "text": "text", "refusal": "refusal"}
# Asks for output r1 has no way to give; "reasoning.encrypted_content" is accepted: r1 returns
# the reasoning in the clear as its summary, and takes reasoning items back without it.
INCLUDABLE = ("reasoning.encrypted_content",)
FOREVER = 100 * 365 * 86400.0  # a negative R1_RESPONSES_TTL keeps responses this long
# Fields that change what the model answers or how, which r1 cannot honour: a 400, never ignored.
REFUSED = {
    "background": "background responses are not supported: r1 answers within the request",
    "conversation": "conversations are not supported; continue one with previous_response_id",
    "prompt": "stored prompt templates are not supported; send input and instructions",
    "max_tool_calls": "max_tool_calls is not supported",
    "top_logprobs": "log probabilities are not supported on /v1/responses; use /v1/chat/completions",
}


@dataclass
class Turn:
    """One request to /v1/responses, checked: what the core gets, and what to keep and echo."""

    request: Request
    items: list[Json]  # the conversation's input items: the previous response's, then this request's
    instructions: str | None
    store: bool
    echo: Json  # the request's fields a Response repeats
    tools: ResponseTools  # what was offered of the request's tools, and what was left out


# --- input items -> chat messages ---------------------------------------------------------------


def input_items(body: Json) -> list[Json]:
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if value is None and body.get("previous_response_id"):
        return []
    if not isinstance(value, list):
        raise BadRequest("field 'input' must be a string or a list of items (messages, function_call, "
                         "function_call_output)")
    for n, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadRequest(f"input[{n}] must be an object, not {json.dumps(item)}")
    return value


def parts(content: Any, where: str) -> Any:
    """Responses content parts as chat's: input_text and output_text are chat's text parts."""
    if not isinstance(content, list):
        return content  # a string, or something chat_messages names as wrong
    converted = []
    for n, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(kind, str) and kind in TEXT_PARTS:
            converted.append({"type": TEXT_PARTS[kind], TEXT_PARTS[kind]: part.get(TEXT_PARTS[kind], part.get("text"))})
        elif kind == "input_image":  # chat's image part; a file_id names a file r1 cannot have
            if part.get("image_url") is None:
                raise BadRequest(f"{where}[{n}] gives no image_url; r1 has no files API, so send the image "
                                 "inline as a data URL (data:image/png;base64,...)")
            data_url_image(part["image_url"], f"{where}[{n}].image_url")  # named as Responses names it
            converted.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        elif kind in ("input_file", "input_audio"):
            converted.append({"type": "file"})  # chat's words refuse it
        else:
            raise BadRequest(f"{where}[{n}] is a {kind!r} part; r1 takes input_text and output_text parts")
    return converted


def chat_shaped(items: list[Json], where: str) -> list[Json]:
    """Input items as chat completions' messages; past reasoning is left out, as chat does."""
    chat: list[Json] = []
    for n, item in enumerate(items):
        at = f"{where}[{n}]"
        kind = item.get("type", "message")
        if kind == "message":
            if item.get("role") not in ROLES:
                raise BadRequest(f"{at}.role must be one of {', '.join(ROLES)}, not {json.dumps(item.get('role'))}")
            chat.append({"role": item["role"], "content": parts(item.get("content"), f"{at}.content")})
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if not isinstance(item.get(key), str):
                    raise BadRequest(f"{at} (a function_call) needs '{key}' as a string")
            namespace = item.get("namespace")  # a namespace's function: the name the model knows it by
            name = flat_name(namespace, item["name"]) if isinstance(namespace, str) else item["name"]
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": name, "arguments": item["arguments"]}}
            if chat and chat[-1]["role"] == "assistant":  # calls after the assistant's words: one turn
                chat[-1].setdefault("tool_calls", []).append(call)
            else:
                chat.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise BadRequest(f"{at} (a function_call_output) needs the 'call_id' of its function_call")
            chat.append({"role": "tool", "tool_call_id": item["call_id"],
                         "content": parts(item.get("output"), f"{at}.output")})
        elif kind != "reasoning":
            raise BadRequest(f"{at} has type {kind!r}, which r1 does not take; send message, function_call "
                             "or function_call_output items")
    return chat


# --- the other fields -----------------------------------------------------------------------------


def refuse_unsupported(body: Json) -> None:
    for field, why in REFUSED.items():
        if body.get(field) not in (None, False, 0):
            raise BadRequest(f"field '{field}': {why}")
    include = body.get("include") or []
    wanted = [i for i in include if i not in INCLUDABLE] if isinstance(include, list) else [include]
    if wanted:
        raise BadRequest(f"field 'include' asks for {', '.join(map(str, wanted))}, which r1 cannot give; "
                         f"it may hold only {', '.join(INCLUDABLE)}")


def an_object(body: Json, key: str) -> Json:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"field '{key}' must be an object, not {json.dumps(value)}")
    return value


def text_format(body: Json) -> str | Json | None:
    text = an_object(body, "text")
    if text.get("verbosity") not in (None, "medium"):
        raise BadRequest(f"text.verbosity {json.dumps(text['verbosity'])} is not supported; r1 leaves the length "
                         "to the model (use max_output_tokens)")
    return format_of(text.get("format"), "text.format", None)


def parse_turn(body: Json, previous: StoredResponse | None) -> Turn:
    model = required_str(body, "model")
    refuse_unsupported(body)
    items = input_items(body)
    instructions = get_str(body, "instructions")
    messages = [{"role": "system", "content": instructions}] if instructions else []
    if previous is not None:
        messages += chat_shaped(previous.input + previous.output, "previous_response")
    messages += chat_shaped(items, "input")
    if not any(m["role"] != "system" for m in messages):
        raise BadRequest("field 'input' must hold a message (or continue a conversation with previous_response_id)")
    reasoning = an_object(body, "reasoning")
    chosen = response_tools(body)
    names = FieldNames("reasoning.effort" if "effort" in reasoning else "think", "text.format")
    thinking = effort(reasoning["effort"], "reasoning.effort") if "effort" in reasoning else think(body)
    shaped, thinking = forced_format(chosen.offered, chosen.forcing, text_format(body), thinking, names)
    request = Request(model=model, messages=chat_messages({"messages": messages}), format=shaped,
                      options=sampling_options(body, FIELDS), tools=chosen.offered, keep_alive=keep_alive(body),
                      think=thinking, effort=effort_level(reasoning.get("effort"), body), think_field=names.think)
    store = get_bool(body, "store", True)
    echo = {"model": model, "instructions": instructions, "max_output_tokens": body.get("max_output_tokens"),
            "temperature": body.get("temperature"), "top_p": body.get("top_p"), "tools": body.get("tools") or [],
            "tool_choice": body.get("tool_choice") or "auto",
            "text": {"format": {"type": "text"}} | an_object(body, "text"),
            "reasoning": {"effort": None, "summary": None} | reasoning,
            "previous_response_id": body.get("previous_response_id"), "store": store,
            "metadata": an_object(body, "metadata"), "parallel_tool_calls": get_bool(body, "parallel_tool_calls", True),
            "truncation": body.get("truncation") or "disabled"}
    conversation = (previous.input + previous.output if previous else []) + items
    return Turn(request, conversation, instructions, store, echo, chosen)


# --- kept Responses ------------------------------------------------------------------------------------


def not_found(what: str, response_id: str) -> NotFound:
    return NotFound(f"{what} {response_id!r} not found: it was not stored (store: false), was deleted, "
                    "or is older than R1_RESPONSES_TTL")


async def stored(kept: StoredResponses, response_id: str, what: str) -> StoredResponse:
    found = await asyncio.to_thread(kept.get, response_id)
    if found is None:
        raise not_found(what, response_id)
    return found


def keeper(kept: StoredResponses, ttl: float, turn: Turn) -> Callable[[Json], Awaitable[bool]]:
    """What keeps a finished Response (nothing for store: false), and says whether it did. A database that
    cannot keep it loses nothing the client asked for: the answer goes out all the same, and the log
    says why no later request can name it."""
    async def keep(response: Json) -> bool:
        if not turn.store:
            return False
        created = time.time()
        try:
            await asyncio.to_thread(kept.put, StoredResponse(
                response["id"], turn.request.model, created, created + (ttl if ttl >= 0 else FOREVER),
                turn.instructions, turn.items, response["output"], response))
        except Exception as exc:
            full = is_disk_full(exc)
            log.warning("response %s answered but not stored (sent with \"store\": false): %s", response["id"],
                        "the disk holding the store is full; free some space" if full else exc, exc_info=not full)
            return False
        return True

    return keep


# --- routes ---------------------------------------------------------------------------------------


@routes.post("/v1/responses")
async def create_response(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    kept = request.app[STORED_RESPONSES]
    previous_id = get_str(body, "previous_response_id")
    previous = await stored(kept, previous_id, "previous_response_id") if previous_id else None
    turn = parse_turn(body, previous)
    if turn.tools.left_out:
        log.info("%s: %s", request.path, turn.tools.note()[NOTE_HEADER])
    shape = ResponseShape(turn.echo, get_bool(body, "stream", False),
                          keeper(kept, request.app[SETTINGS].responses_ttl, turn), turn.tools.namespaced)
    return await serve(request, body, turn.request, shape, ResponseShape.watch, turn.tools.note())


@routes.get("/v1/responses/{id}")
async def get_response(request: web.Request) -> web.Response:
    found = await stored(request.app[STORED_RESPONSES], request.match_info["id"], "response")
    return web.json_response(found.response)


@routes.delete("/v1/responses/{id}")
async def delete_response(request: web.Request) -> web.Response:
    response_id = request.match_info["id"]
    if not await asyncio.to_thread(request.app[STORED_RESPONSES].delete, response_id):
        raise not_found("response", response_id)
    return web.json_response({"id": response_id, "object": "response.deleted", "deleted": True})
