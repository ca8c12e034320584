"""Anthropic's Messages API (/v1/messages): a third dialect over the same generation core.

Requests are parsed into the core's `Request` (tools, tool choice and sampling through the
OpenAI dialect's helpers, whose logic is the same), and the `Chunk`s and the `Final` that
`generate` yields come back as Anthropic's content blocks: `thinking` (when asked for),
`text`, `tool_use`. Streams are Anthropic's named server-sent events; errors are Anthropic's
`{"type": "error", "error": {...}}` (daemon/api/http.py's `error_body` shapes them by path).

What r1 cannot do as Anthropic does is a 400 that says so, never a silent difference: images
anywhere but a user message's content or by URL, documents, server tools, an assistant message to
continue (prefill), MCP servers, context edits other than clearing thinking (context_editing.py).
Beyond Anthropic's API, a "system" message may sit anywhere in `messages` (some clients send one):
it stays where it is.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from ..errors import BadRequest
from ..generation import Chunk, Final, Request, Whole, count_tokens
from ..options.check import INT32_MAX
from .context import CORE
from .context_editing import applied_edits, context_edits
from .fields import THINK_LEVELS, FieldNames, forced_format, image, keep_alive, messages, required_str
from .http import NAMED_SSE, new_id, read_json, sse_event
from .openai import function_tools, sampling_options
from .respond import respond

routes = web.RouteTableDef()

Json = dict[str, Any]

# Anthropic's request fields and the Ollama options they set.
SAMPLING_FIELDS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "stop_sequences": "stop",
                   "max_tokens": "num_predict"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}  # the core's done_reason -> Anthropic's
MEDIA_BLOCKS = ("image", "document", "search_result", "container_upload")
# Fields that would change the answer and that r1 cannot honour: refused rather than ignored.
REFUSED_FIELDS = {"mcp_servers": "MCP servers", "container": "code execution containers"}
NAMES = FieldNames(think="thinking", format="output_config.format")  # for the shared checks' errors
THINKING_DISPLAYS = ("summarized", "omitted")  # r1's thinking is shown whole: its own summary


# --- request fields ---------------------------------------------------------------------------


def max_tokens(body: Json) -> int:
    """Required, as in Anthropic's API: the client says how long an answer may be."""
    value = body.get("max_tokens")
    if value is None:
        raise BadRequest("field 'max_tokens' is required: the most tokens the answer may have, like 1024")
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= INT32_MAX:
        raise BadRequest(f"field 'max_tokens' must be a whole number from 1 to {INT32_MAX}, not {json.dumps(value)}")
    return value


def system_prompt(body: Json) -> str | None:
    """`system` as a string or a list of text blocks, joined by newlines."""
    value = body.get("system")
    if value is None or isinstance(value, str):
        return value
    return block_text(value, "system")


def block_text(blocks: Any, where: str) -> str:
    """Text blocks (a system prompt, a tool result's content) as one string."""
    if not isinstance(blocks, list):
        raise BadRequest(f"{where} must be a string or a list of text blocks")
    texts = []
    for n, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        refuse_media(kind, f"{where}[{n}]")
        if kind != "text" or not isinstance(block.get("text"), str):
            raise BadRequest(f"{where}[{n}] must be a text block like {{\"type\": \"text\", \"text\": \"...\"}}")
        texts.append(block["text"])
    return "\n".join(texts)


def refuse_media(kind: Any, where: str) -> None:
    if kind == "image":
        raise BadRequest(f"{where} is an image block, which r1 takes in a user message's content only")
    if kind in MEDIA_BLOCKS:
        raise BadRequest(f"{where} is a {kind!r} block, which r1 does not take: it serves text models only; "
                         "send the content as text blocks")


def block_image(block: Json, where: str) -> str:
    """An image block's base64 image. r1 works offline: it fetches no URL, and has no files API."""
    found = block.get("source")
    source: dict[str, Any] = found if isinstance(found, dict) else {}
    kind = source.get("type")
    if kind == "base64":
        return image(source.get("data"), f"{where}.source.data")
    if kind in ("url", "file"):
        raise BadRequest(f"{where}.source is a {kind} source, and r1 fetches no URLs and has no files API "
                         "(it works offline); send the image as {\"type\": \"base64\", \"media_type\", \"data\"}")
    raise BadRequest(f"{where}.source must be "
                     "{\"type\": \"base64\", \"media_type\": \"image/png\", \"data\": \"...\"}")


def tool_result(block: Json, where: str, names: dict[str, str]) -> Json:
    """A tool_result block as the tool message chat templates read (Ollama's shape, with the tool's name)."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or call_id not in names:
        raise BadRequest(f"{where}.tool_use_id {json.dumps(call_id)} names no tool_use block of an earlier "
                         "assistant message")
    content = block.get("content")
    text = content if isinstance(content, str) else "" if content is None else block_text(content, f"{where}.content")
    if block.get("is_error"):
        text = f"Error: {text}"  # the template has no other way to tell the model the call failed
    return {"role": "tool", "content": text, "tool_name": names[call_id], "tool_call_id": call_id}


def turn(message: Json, where: str, names: dict[str, str]) -> list[Json]:
    """One Anthropic message as the core's messages: tool results become tool messages before the text."""
    role = message.get("role")
    if role not in ("user", "assistant", "system"):
        raise BadRequest(f"{where}.role must be \"user\", \"assistant\" or \"system\", not {json.dumps(role)}")
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if role == "system":  # kept where it is, as on OpenAI's routes: the template places it
        return [{"role": role, "content": block_text(content, f"{where}.content")}]
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of content blocks")
    texts: list[str] = []
    images: list[str] = []
    calls: list[Json] = []
    results: list[Json] = []
    for n, block in enumerate(content):
        at = f"{where}.content[{n}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "image" and role == "user":
            images.append(block_image(block, at))
            continue
        refuse_media(kind, at)
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # past thinking is not sent back to the model, as Ollama does
        elif kind == "tool_use" and role == "assistant":
            if not isinstance(block.get("name"), str) or not isinstance(block.get("input", {}), dict):
                raise BadRequest(f"{at} must be {{\"type\": \"tool_use\", \"id\", \"name\", \"input\": {{...}}}}")
            calls.append({"type": "function", "function": {"name": block["name"], "arguments": block.get("input", {})}})
            if isinstance(block.get("id"), str):
                calls[-1]["id"] = block["id"]
                names[block["id"]] = block["name"]
        elif kind == "tool_result" and role == "user":
            results.append(tool_result(block, at, names))
        else:
            raise BadRequest(f"{at} is a {json.dumps(kind)} block, which a {role} message cannot hold here; "
                             "r1 takes text, tool_use (assistant), tool_result (user) and thinking (assistant) blocks")
    text = "\n".join(texts)
    out = [{"role": role, "content": text, **({"tool_calls": calls} if calls else {}),
            **({"images": images} if images else {})}] if text or calls or images else []
    return results + out


def chat_messages(body: Json) -> list[Json]:
    value = body.get("messages")
    if not isinstance(value, list) or not value:
        raise BadRequest("field 'messages' must be a non-empty list of {role, content} messages")
    names: dict[str, str] = {}  # tool_use id -> tool name, for the results that answer it
    converted: list[Any] = []
    for n, message in enumerate(value):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{n}] must be an object with a 'role' and a 'content'")
        converted += turn(message, f"messages[{n}]", names)
    if value[-1].get("role") == "assistant":
        raise BadRequest("the last message is the assistant's: r1 does not continue a prefilled answer; "
                         "end with a user message")
    return messages({"messages": converted})


def function_tool(tool: Any, where: str) -> Json:
    """Anthropic's {name, description, input_schema} as a function tool (OpenAI's and Ollama's shape)."""
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise BadRequest(f"{where} must be a tool like {{\"name\", \"description\", \"input_schema\": {{...}}}}")
    if tool.get("type") not in (None, "custom"):
        raise BadRequest(f"{where} is Anthropic's server tool {tool['type']!r}, which r1 cannot run; "
                         "offer it as a custom tool with an input_schema and run it in the client")
    schema = tool.get("input_schema")
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise BadRequest(f"{where}.input_schema must be a JSON schema object with \"type\": \"object\"")
    function = {"name": tool["name"], "parameters": schema}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def tools_and_choice(body: Json) -> tuple[list[Json] | None, bool]:
    """The function tools offered, narrowed by tool_choice, and whether it forces a call (any, tool)."""
    offered = body.get("tools")
    if offered is not None and not isinstance(offered, list):
        raise BadRequest("field 'tools' must be a list")
    converted = [function_tool(t, f"tools[{n}]") for n, t in enumerate(offered or [])]
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type") if isinstance(choice, dict) else None
    openai_choice: Any = {"auto": "auto", "any": "required", "none": "none"}.get(kind if isinstance(kind, str) else "")
    if kind == "tool":
        openai_choice = {"type": "function", "function": {"name": choice.get("name")}}
    if openai_choice is None:
        raise BadRequest("field 'tool_choice' must be {\"type\": \"auto\"}, {\"type\": \"any\"}, {\"type\": \"none\"} "
                         "or {\"type\": \"tool\", \"name\": ...}")
    return function_tools({"tools": converted, "tool_choice": openai_choice})


def output_format(body: Json) -> Json | None:
    """Structured outputs: output_config.format's JSON schema (or the older top-level output_format)."""
    config = body.get("output_config")
    if config is not None and not isinstance(config, dict):
        raise BadRequest("field 'output_config' must be an object like {\"format\": {\"type\": \"json_schema\", ...}}")
    unknown = sorted(set(config or {}) - {"format", "effort"})
    if unknown:
        raise BadRequest(f"output_config.{unknown[0]} is not supported by r1; leave it out")
    spec = (config or {}).get("format") or body.get("output_format")
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "json_schema" or not isinstance(spec.get("schema"), dict):
        raise BadRequest("output_config.format must be {\"type\": \"json_schema\", \"schema\": {...}}")
    return spec["schema"]


def thinking(body: Json) -> tuple[bool | None, int | None]:
    """`thinking`: enabled shows a reasoning model's thinking as blocks, at most budget_tokens of it (the
    runner closes the block then); adaptive leaves it to the model, as Ollama's unset think does (a model
    that thinks shows its thinking, one that cannot answers without: no error); disabled or absent hides it.
    output_config.effort sets how much (effort()); display "omitted" sends the blocks empty (omits_thinking)."""
    value = body.get("thinking")
    if value is None:
        return False, None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("adaptive", "enabled") and value.get("display") not in (None, *THINKING_DISPLAYS):
        raise BadRequest(f"thinking.display must be \"summarized\" or \"omitted\", not {json.dumps(value['display'])}")
    if kind == "disabled":
        return False, None
    if kind == "adaptive":
        return None, None
    if kind == "enabled":
        budget = value.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise BadRequest("thinking.budget_tokens must be a positive whole number, like 1024")
        return True, budget
    raise BadRequest("field 'thinking' must be {\"type\": \"enabled\", \"budget_tokens\": N}, {\"type\": \"adaptive\"} "
                     "or {\"type\": \"disabled\"}")


def parse(body: Json, *, counting: bool = False) -> Request:
    """The core's Request from a Messages body; count_tokens takes the same body less max_tokens."""
    model = required_str(body, "model")
    for key, what in REFUSED_FIELDS.items():
        if body.get(key) is not None:
            raise BadRequest(f"field '{key}' ({what}) is not supported by r1; leave it out")
    context_edits(body)
    think, budget = thinking(body)
    if not counting:
        max_tokens(body)
    tools, forcing = tools_and_choice(body)
    shaped, think = forced_format(tools, forcing, output_format(body), think, NAMES)
    system = system_prompt(body)
    # The system prompt as the first message: a system message later in `messages` stays where it is.
    messages = ([{"role": "system", "content": system}] if system else []) + chat_messages(body)
    return Request(model=model, messages=messages, system=system, format=shaped,
                   options=sampling_options(body, SAMPLING_FIELDS), think=think, think_budget=budget,
                   think_field=NAMES.think, effort=effort(body), keep_alive=keep_alive(body), tools=tools)


def effort(body: Json) -> str | None:
    """output_config.effort (low, medium, high) as r1's think level; Anthropic's "max" is high."""
    value = (body.get("output_config") or {}).get("effort")
    if value is None:
        return None
    if value not in (*THINK_LEVELS, "max"):
        raise BadRequest(f"output_config.effort must be low, medium, high or max, not {value!r}")
    return "high" if value == "max" else value


# --- answers ----------------------------------------------------------------------------------


def omits_thinking(body: Json) -> bool:
    """thinking.display "omitted": thinking blocks come empty, with their signature, as Anthropic sends them."""
    value = body.get("thinking")
    return isinstance(value, dict) and value.get("display") == "omitted"


def signature(thinking_text: str) -> str:
    """Anthropic's clients carry a thinking block's signature back; r1 drops past thinking, so any
    non-empty string does: a digest of the text."""
    return hashlib.sha256(thinking_text.encode()).hexdigest()


def tool_uses(final: Final, one: bool) -> list[Json]:
    calls = final.tool_calls[:1] if one else final.tool_calls
    return [{"type": "tool_use", "id": new_id("toolu_"), "name": c["function"]["name"],
             "input": c["function"]["arguments"]} for c in calls]


def stop_reason(final: Final) -> str:
    return "tool_use" if final.tool_calls else STOP_REASONS.get(final.done_reason, "end_turn")


def usage(final: Final) -> Json:
    """Anthropic counts the prompt tokens read from a cache apart from those evaluated."""
    return {"input_tokens": final.prompt_eval_count, "output_tokens": final.eval_count,
            "cache_read_input_tokens": final.prompt_cached, "cache_creation_input_tokens": 0}


class MessageShape:
    """One `message`, or its stream: message_start, each block's start, deltas and stop, then
    message_delta and message_stop. Blocks in order: thinking, text, tool_use."""

    framing = NAMED_SSE
    stream_default = False

    def __init__(self, body: Json, parsed: Request) -> None:
        choice = body.get("tool_choice")
        self.one_call = isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True
        self.omit_thinking = omits_thinking(body)
        self.common = {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": parsed.model}
        edits = applied_edits(body)  # what context editing did, for a request that asked for it
        self.context: Json = {} if edits is None else {"context_management": edits}
        self.started = False
        self.index = -1  # of the open block
        self.open: str | None = None  # its type
        self.thought: list[str] = []  # the open thinking block's text, for its signature

    def answer(self, whole: Whole) -> Json:
        content: list[Json] = []
        if whole.thinking:
            content.append({"type": "thinking", "thinking": "" if self.omit_thinking else whole.thinking,
                            "signature": signature(whole.thinking)})
        calls = tool_uses(whole.final, self.one_call)
        if whole.content or not (content or calls):
            content.append({"type": "text", "text": whole.content})
        return self.common | {"content": content + calls, "stop_reason": stop_reason(whole.final),
                              "stop_sequence": None, "usage": usage(whole.final)} | self.context

    def event(self, item: Chunk | Final) -> bytes:
        out = b""
        if not self.started:
            self.started = True
            out = sse_event("message_start", {"type": "message_start", "message": self.common | {
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}})  # the prompt is counted by the end
        if isinstance(item, Final):
            return out + self.last(item)
        if item.thinking:
            out += self.block("thinking", {"thinking": ""}) if self.open != "thinking" else b""
            self.thought.append(item.thinking)
            if not self.omit_thinking:
                out += self.delta({"type": "thinking_delta", "thinking": item.thinking})
        if item.content:
            out += self.block("text", {"text": ""}) if self.open != "text" else b""
            out += self.delta({"type": "text_delta", "text": item.content})
        return out

    def block(self, kind: str, fields: Json) -> bytes:
        """Stop the open block, start the next."""
        out = self.stop()
        self.index += 1
        self.open = kind
        return out + sse_event("content_block_start", {"type": "content_block_start", "index": self.index,
                                                   "content_block": {"type": kind, **fields}})

    def delta(self, delta: Json) -> bytes:
        return sse_event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})

    def stop(self) -> bytes:
        if self.open is None:
            return b""
        out = b""
        if self.open == "thinking":
            out = self.delta({"type": "signature_delta", "signature": signature("".join(self.thought))})
            self.thought = []
        self.open = None
        return out + sse_event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def last(self, final: Final) -> bytes:
        calls = tool_uses(final, self.one_call)
        out = self.block("text", {"text": ""}) if self.index < 0 and not calls else b""  # never an empty message
        for call in calls:
            out += self.block("tool_use", {"id": call["id"], "name": call["name"], "input": {}})
            out += self.delta({"type": "input_json_delta", "partial_json": json.dumps(call["input"])})
        out += self.stop()
        counts = usage(final)
        return out + sse_event("message_delta", {"type": "message_delta",
                                             "delta": {"stop_reason": stop_reason(final), "stop_sequence": None},
                                             "usage": counts} | self.context) + sse_event("message_stop", {
            "type": "message_stop"})


# --- routes -----------------------------------------------------------------------------------


@routes.post("/v1/messages")
async def create_message(request: web.Request) -> web.StreamResponse:
    return await respond(request, parse, MessageShape)


@routes.post("/v1/messages/count_tokens")
async def count_message_tokens(request: web.Request) -> web.Response:
    """The tokens of the prompt the model would see: the conversation through its chat template."""
    body = await read_json(request)
    parsed = parse(body, counting=True)
    return web.json_response({"input_tokens": await count_tokens(request.app[CORE], parsed)})
