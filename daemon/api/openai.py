"""OpenAI's API (/v1/...): a second dialect over the same generation core as /api/....

Requests are parsed into the core's `Request` (the Ollama routes' helpers do the checks
they share), and the `Chunk`s and the `Final` that `generate` yields are shaped as OpenAI
shapes them: chat completions, text completions, embeddings, models. Streams are
server-sent events (`data: {json}` then `data: [DONE]`); errors are OpenAI's
`{"error": {...}}`, by status before the first byte and in-band after it.

Beyond OpenAI's fields, r1 reads some of Ollama's (clients send them with `extra_body`):
`options` (num_ctx, top_k, ...; OpenAI's own fields win), `keep_alive`, and on /v1/embeddings `truncate`.
"""

from __future__ import annotations

import array
import asyncio
import base64
import json
import sys
import time
from datetime import datetime
from typing import Any

from aiohttp import web

from ..errors import BadRequest, ModelNotFound
from ..embedding import embed
from ..generation import Chunk, Final, Request, Whole
from ..options.check import check_option, check_options
from ..remote.models import remote_of
from ..store import InvalidNameError, ModelRecord
from .context import CORE, STORE
from .fields import (TEXT_ONLY, FieldNames, data_url_image, embed_request, forced_format, get_bool, keep_alive,
                     logprobs, messages, required_str, think, think_level, tools)
from .http import SSE, new_id, read_json
from .respond import respond


routes = web.RouteTableDef()

Json = dict[str, Any]

FINISH_REASONS = {"stop": "stop", "length": "length"}  # the core's done_reason -> OpenAI's finish_reason
# OpenAI's request fields and the Ollama options they set; later keys win (max_completion_tokens).
CHAT_FIELDS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed",
               "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty",
               "stop": "stop", "max_tokens": "num_predict", "max_completion_tokens": "num_predict"}
COMPLETION_FIELDS = {k: v for k, v in CHAT_FIELDS.items() if k != "max_completion_tokens"}
COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
MEDIA_PARTS = ("input_audio", "file")
COMPLETION_MAX_LOGPROBS = 5  # OpenAI's bound for /v1/completions
# What follows a chunk's delta (or text) in its event; the part before it is formatted once per stream.
CHOICE_TAIL = ', "logprobs": null, "finish_reason": null}]}\n\n'


# --- models -----------------------------------------------------------------------------------


def model_object(record: ModelRecord) -> Json:
    remote = remote_of(record.manifest)
    return {"id": record.name, "object": "model",
            "created": int(datetime.fromisoformat(record.modified_at).timestamp()),
            # a remote model: the remote that answers for it, and (r1's addition) its upstream model
            "owned_by": remote[0] if remote else "r1", **({"remote": {"name": remote[0], "model": remote[1]}}
                                                           if remote else {})}


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    records = await asyncio.to_thread(request.app[STORE].models)
    return web.json_response({"object": "list", "data": [model_object(r) for r in records]})


@routes.get("/v1/models/{id:.+}")  # names hold '/' and ':' (hf.co/org/repo:Q4_K_M)
async def retrieve_model(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    try:
        record = await asyncio.to_thread(request.app[STORE].get, name)
    except InvalidNameError as exc:  # no model can have such a name: it is not there
        raise ModelNotFound(f"model '{name}' not found: {exc}") from exc
    return web.json_response(model_object(record))


# --- request fields ---------------------------------------------------------------------------


def sampling_options(body: Json, fields: dict[str, str]) -> dict[str, Any]:
    """Ollama options from OpenAI's fields, over the `options` object r1 also accepts."""
    options = check_options(body.get("options"))
    for key, option in fields.items():
        value = body.get(key)
        if value is not None:
            options[option] = check_option(option, value, f"field '{key}'")
    return options


def only_one_choice(body: Json) -> None:
    n = body.get("n")
    if n is not None and n != 1 or isinstance(n, bool):
        raise BadRequest(f"field 'n' must be 1, not {json.dumps(n)}: r1 generates one choice per request")


def include_usage(body: Json) -> bool:
    value = body.get("stream_options")
    if value is None:
        return False
    if not isinstance(value, dict):
        raise BadRequest("field 'stream_options' must be an object like {\"include_usage\": true}")
    return get_bool(value, "include_usage", False)


def response_format(body: Json) -> str | Json | None:
    """OpenAI's response_format as the core's format: None, "json" or a JSON schema."""
    return format_of(body.get("response_format"), "response_format", "json_schema")


def format_of(value: Any, where: str, holder: str | None) -> str | Json | None:
    """A format object as the core's format: chat's response_format (the schema under `holder`,
    "json_schema") or the Responses API's text.format (the schema in the object itself)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise BadRequest(f"field '{where}' must be an object with a 'type'")
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = value.get(holder) if holder else value
        at = f"{where}.{holder}" if holder else where
        if not isinstance(spec, dict):
            raise BadRequest(f"{at} must be an object with a 'schema'")
        schema = spec.get("schema")
        if schema is None:
            return "json"
        if not isinstance(schema, dict):
            raise BadRequest(f"{at}.schema must be a JSON schema object")
        return schema
    raise BadRequest(f"{where} type {kind!r} is not supported; use 'text', 'json_object' or 'json_schema'")


# OpenAI's reasoning efforts as r1's think levels (THINK_BUDGETS in generation.py); "none" turns thinking off.
EFFORT_LEVELS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}


def reasoning(body: Json) -> bool | None:
    """reasoning_effort "none" turns a reasoning model's thinking off; other levels leave it on."""
    if "reasoning_effort" not in body:
        return think(body)  # Ollama's "think", which r1 also reads
    return effort(body["reasoning_effort"], "reasoning_effort")


def effort(value: Any, where: str) -> bool | None:
    """A reasoning effort as the core's think: "none" off, a level on (its level: effort_level())."""
    if value is None:
        return None
    if value == "none":
        return False
    if isinstance(value, str) and value in EFFORT_LEVELS:
        return True
    raise BadRequest(f"field '{where}' must be none, minimal, low, medium, high or xhigh, not {json.dumps(value)}")


def effort_level(value: Any, body: Json) -> str | None:
    """A reasoning effort as r1's think level; without one, Ollama's `think` level, which r1 also reads."""
    return think_level(body) if value is None else EFFORT_LEVELS.get(value) if isinstance(value, str) else None


def reasoning_level(body: Json) -> str | None:
    return effort_level(body.get("reasoning_effort"), body)


def function_tools(body: Json) -> tuple[list[Any] | None, bool]:
    """`tools` as given (OpenAI's and Ollama's shapes are the same), narrowed by tool_choice, and whether
    tool_choice forces a call."""
    offered = checked_tools(tools(body))
    choice = body.get("tool_choice")
    function = choice.get("function") if isinstance(choice, dict) else None
    named = function.get("name") if isinstance(function, dict) else None
    return chosen_tools(offered, choice, named, "\"none\", \"auto\", \"required\" or "
                        "{\"type\": \"function\", \"function\": {\"name\": ...}}")


def checked_tools(offered: list[Any] | None) -> list[Any] | None:
    """Function tools in chat's shape, each with a name and, when given, a JSON schema of an object
    for its parameters."""
    for n, tool in enumerate(offered or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"tools[{n}] must be {{\"type\": \"function\", \"function\": {{\"name\", ...}}}}")
        check_parameters(function.get("parameters"), f"tools[{n}]", function["name"])
    return offered


def check_parameters(schema: Any, where: str, name: str) -> None:
    """A tool's parameters must be a JSON schema of an object: templates render them and models fill them in."""
    if schema is None:
        return
    problem = None
    if not isinstance(schema, dict):
        problem = "is not a JSON schema object"
    elif schema.get("type", "object") != "object":
        problem = f"has type {json.dumps(schema['type'])}; a tool's arguments are an object"
    elif not isinstance(properties := schema.get("properties", {}), dict) or not all(
            isinstance(p, dict) for p in properties.values()):
        problem = "has 'properties' that are not an object of schemas"
    elif not isinstance(required := schema.get("required", []), list) or not all(isinstance(r, str) for r in required):
        problem = "has 'required' that is not a list of property names"
    if problem:
        raise BadRequest(f"{where} ({name!r}): its parameters {problem}; send a JSON schema like "
                         "{\"type\": \"object\", \"properties\": {...}, \"required\": [...]}")


def chosen_tools(offered: list[Any] | None, choice: Any, named: str | None,
                 shapes: str) -> tuple[list[Any] | None, bool]:
    """The tools a tool_choice leaves: all (auto, required, unset), none, or the one it names; and whether
    the model must call one (required, named: a grammar makes it, fields.forced_format)."""
    if named is not None:
        hits = [t for t in offered or [] if t["function"]["name"] == named]
        if not hits:
            raise BadRequest(f"tool_choice names the function {named!r}, which is not in 'tools'")
        return hits, True
    if choice is None or choice in ("auto", "required"):
        return offered, choice == "required"
    if choice == "none":
        return None, False
    raise BadRequest(f"field 'tool_choice' must be {shapes}")


def content_parts(content: Any, where: str) -> tuple[str, list[str]]:
    """A message's content as one string (text parts joined by newlines) and its images (image_url parts
    with data URLs), base64, in Ollama's shape: the images go before the text."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise BadRequest(f"{where} must be a string or a list of content parts")
    texts, images = [], []
    for n, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            images.append(data_url_image(url, f"{where}[{n}].image_url.url"))
            continue
        if kind in MEDIA_PARTS:
            raise BadRequest(f"{where}[{n}] is an {kind!r} part, but {TEXT_ONLY}; send the content as text parts")
        if kind not in ("text", "refusal") or not isinstance(part.get(kind), str):
            raise BadRequest(f"{where}[{n}] must be a content part like {{\"type\": \"text\", \"text\": \"...\"}}")
        texts.append(part[kind])
    return "\n".join(texts), images


def ollama_tool_calls(calls: Any, where: str) -> list[Json]:
    """OpenAI's tool_calls (arguments as a JSON string) in Ollama's shape (arguments as an object)."""
    if not isinstance(calls, list):
        raise BadRequest(f"{where} must be a list")
    converted = []
    for n, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"{where}[{n}] must be "
                             "{\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}")
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as exc:
                raise BadRequest(f"{where}[{n}].function.arguments is not valid JSON: {exc}") from exc
        if not isinstance(arguments, dict):
            raise BadRequest(f"{where}[{n}].function.arguments must be a JSON object")
        out: Json = {"type": "function", "function": {"name": function["name"], "arguments": arguments}}
        if isinstance(call.get("id"), str):
            out["id"] = call["id"]
        converted.append(out)
    return converted


def chat_messages(body: Json) -> list[Json]:
    """OpenAI's messages in the shape the core and chat templates take (Ollama's)."""
    value = body.get("messages")
    if not isinstance(value, list) or not value:
        raise BadRequest("field 'messages' must be a non-empty list of messages")
    names: dict[str, str] = {}  # tool call id -> function name, for tool results
    converted: list[Any] = []
    for n, message in enumerate(value):
        if not isinstance(message, dict):
            converted.append(message)  # messages() says what is wrong with it
            continue
        out = {k: v for k, v in message.items() if k not in ("reasoning_content", "refusal", "audio")}
        if out.get("role") == "developer":  # OpenAI's newer name for system; templates know only system
            out["role"] = "system"
        out["content"], images = content_parts(message.get("content"), f"messages[{n}].content")
        if images:
            out["images"] = images
        if message.get("tool_calls") is not None:
            out["tool_calls"] = ollama_tool_calls(message["tool_calls"], f"messages[{n}].tool_calls")
            names.update((c["id"], c["function"]["name"]) for c in out["tool_calls"] if "id" in c)
        call_id = message.get("tool_call_id")
        if call_id is not None and not isinstance(call_id, str):
            raise BadRequest(f"messages[{n}].tool_call_id must be a string: the id of the tool call it answers")
        if out.get("role") == "tool" and "tool_name" not in out and call_id in names:
            out["tool_name"] = names[call_id]  # what Ollama's templates read
        converted.append(out)
    return messages({"messages": converted})


def chat_request(body: Json) -> Request:
    model = required_str(body, "model")
    only_one_choice(body)
    names = FieldNames("reasoning_effort" if "reasoning_effort" in body else "think", "response_format")
    offered, forcing = function_tools(body)
    shaped, thinking = forced_format(offered, forcing, response_format(body), reasoning(body), names)
    return Request(
        model=model,
        messages=chat_messages(body),
        format=shaped,
        options=sampling_options(body, CHAT_FIELDS),
        think=thinking,
        effort=reasoning_level(body),
        think_field=names.think,
        keep_alive=keep_alive(body),
        tools=offered,
        logprobs=logprobs(body),
    )


def completion_request(body: Json) -> Request:
    model = required_str(body, "model")
    only_one_choice(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("field 'prompt' must be a string (or a list of one string); token arrays and "
                         "several prompts in one request are not supported")
    if not prompt:  # the core takes an empty prompt as Ollama's "load the model", which OpenAI has no use for
        raise BadRequest("field 'prompt' must not be empty")
    if body.get("echo"):
        raise BadRequest("field 'echo' is not supported: the response holds the completion only")
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise BadRequest(f"field 'suffix' must be a string, not {json.dumps(suffix)}")
    if body.get("best_of") not in (None, 1):
        raise BadRequest("field 'best_of' must be 1: r1 generates one completion per request")
    options = sampling_options(body, COMPLETION_FIELDS)
    options.setdefault("num_predict", COMPLETION_MAX_TOKENS)
    # Completions take the prompt as it is: no chat template.
    return Request(model=model, prompt=prompt, raw=True, format=response_format(body), options=options,
                   keep_alive=keep_alive(body), suffix=suffix or None, logprobs=completion_logprobs(body))


def completion_logprobs(body: Json) -> int | None:
    """/v1/completions' `logprobs`: how many alternatives to list with each token (0-5), or None."""
    value = body.get("logprobs")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= COMPLETION_MAX_LOGPROBS:
        raise BadRequest(f"field 'logprobs' must be an integer from 0 to {COMPLETION_MAX_LOGPROBS}, "
                         f"not {json.dumps(value)}")
    return value


# --- responses --------------------------------------------------------------------------------


def usage(final: Final) -> Json:
    """OpenAI counts the whole prompt, with the part served from a cache in its details."""
    prompt = final.prompt_eval_count + final.prompt_cached
    counts = {"prompt_tokens": prompt, "completion_tokens": final.eval_count, "total_tokens": prompt + final.eval_count,
              "prompt_tokens_details": {"cached_tokens": final.prompt_cached}}
    # r1's addition for a remote model with a price, in US dollars, where OpenRouter puts it
    return counts | {"cost": final.cost} if final.cost is not None else counts


def openai_tool_calls(final: Final) -> list[Json]:
    return [{"id": new_id("call_"), "type": "function",
             "function": {"name": c["function"]["name"], "arguments": json.dumps(c["function"]["arguments"])}}
            for c in final.tool_calls]


def finish_reason(final: Final) -> str:
    return "tool_calls" if final.tool_calls else FINISH_REASONS.get(final.done_reason, "stop")


class OpenAIShape:
    """What OpenAI's events share: an id, the object kind, the model; formatted once per stream,
    up to the field each event fills (`head`)."""

    framing = SSE
    stream_default = False
    id_prefix, kind, field = "", "", ""

    def __init__(self, body: Json, parsed: Request) -> None:
        self.with_usage = include_usage(body)
        self.with_logprobs = parsed.logprobs is not None
        self.common = {"id": new_id(self.id_prefix), "object": self.kind, "created": int(time.time()),
                       "model": parsed.model, "system_fingerprint": "r1"}
        self.head = "data: " + json.dumps(self.common)[:-1] + f', "choices": [{{"index": 0, "{self.field}": '

    def logprobs(self, entries: list[Json]) -> Json:
        """A choice's `logprobs` from the core's entries (Ollama's shape)."""
        raise NotImplementedError

    def tail(self, chunk: Chunk) -> str:
        """What follows a chunk's delta or text: its log probabilities, when it carries some."""
        if not chunk.logprobs:
            return CHOICE_TAIL
        return f', "logprobs": {json.dumps(self.logprobs(list(chunk.logprobs)))}, "finish_reason": null}}]}}\n\n'

    def whole_logprobs(self, whole: Whole) -> Json | None:
        return self.logprobs(whole.logprobs) if self.with_logprobs else None


class ChatShape(OpenAIShape):
    """`chat.completion.chunk` events, or one `chat.completion`."""

    id_prefix, kind, field = "chatcmpl-", "chat.completion.chunk", "delta"

    def __init__(self, body: Json, parsed: Request) -> None:
        super().__init__(body, parsed)
        self.role_sent = False

    def event(self, item: Chunk | Final) -> bytes:
        if isinstance(item, Chunk):
            delta: Json = {}
            if not self.role_sent:
                delta["role"] = "assistant"
                self.role_sent = True
            if item.thinking:
                delta["reasoning_content"] = item.thinking
            if item.content:
                delta["content"] = item.content
            return (self.head + json.dumps(delta) + self.tail(item)).encode()
        return self.last(item)

    def logprobs(self, entries: list[Json]) -> Json:
        return {"content": entries, "refusal": None}  # the core's entries are OpenAI's chat shape already

    def last(self, final: Final) -> bytes:
        events = []
        delta: Json = {} if self.role_sent else {"role": "assistant", "content": ""}
        if final.tool_calls:
            calls = [{"index": i, **call} for i, call in enumerate(openai_tool_calls(final))]
            events.append(self.common | {"choices": [
                {"index": 0, "delta": delta | {"tool_calls": calls}, "logprobs": None, "finish_reason": None}]})
            delta = {}
        events.append(self.common | {"choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason(final)}]})
        if self.with_usage:
            events.append(self.common | {"choices": [], "usage": usage(final)})
        return b"".join(SSE.frame(event) for event in events)

    def answer(self, whole: Whole) -> Json:
        final = whole.final
        message: Json = {"role": "assistant", "content": whole.content}
        if whole.thinking:
            message["reasoning_content"] = whole.thinking
        if final.tool_calls:
            message["content"] = whole.content or None
            message["tool_calls"] = openai_tool_calls(final)
        return self.common | {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "logprobs": self.whole_logprobs(whole),
                         "finish_reason": finish_reason(final)}],
            "usage": usage(final),
        }


class CompletionShape(OpenAIShape):
    """`text_completion` events, or one `text_completion`."""

    id_prefix, kind, field = "cmpl-", "text_completion", "text"

    def __init__(self, body: Json, parsed: Request) -> None:
        super().__init__(body, parsed)
        self.offset = 0  # characters of the completion so far: where the next token starts

    def event(self, item: Chunk | Final) -> bytes:
        if isinstance(item, Chunk):
            # Completions have no reasoning field: what the core split off as thinking is text here.
            text = item.thinking + item.content if item.thinking else item.content
            return (self.head + json.dumps(text) + self.tail(item)).encode()
        events = [self.common | {"choices": [
            {"text": "", "index": 0, "logprobs": None, "finish_reason": finish_reason(item)}]}]
        if self.with_usage:
            events.append(self.common | {"choices": [], "usage": usage(item)})
        return b"".join(SSE.frame(event) for event in events)

    def answer(self, whole: Whole) -> Json:
        return self.common | {
            "choices": [{"text": whole.thinking + whole.content, "index": 0, "logprobs": self.whole_logprobs(whole),
                         "finish_reason": finish_reason(whole.final)}],
            "usage": usage(whole.final),
        }

    def logprobs(self, entries: list[Json]) -> Json:
        """The legacy completions shape: parallel lists, alternatives as {token: logprob}."""
        offsets = []
        for entry in entries:
            offsets.append(self.offset)
            self.offset += len(entry["token"])
        return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
                "text_offset": offsets}


# --- generation routes ------------------------------------------------------------------------


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await respond(request, chat_request, ChatShape)


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    return await respond(request, completion_request, CompletionShape)


def embedding_inputs(body: Json) -> list[str]:
    value = body.get("input")
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("field 'input' must be a string or a non-empty list of strings")
    if not all(isinstance(v, str) for v in inputs):
        if all(isinstance(v, (int, list)) for v in inputs):
            raise BadRequest("field 'input' holds token arrays, which r1 does not take: send text")
        raise BadRequest("field 'input' must be a string or a non-empty list of strings")
    return inputs


def base64_floats(vector: list[float]) -> str:
    """What OpenAI sends for encoding_format "base64": little-endian float32 bytes."""
    packed = array.array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    """Inputs longer than the context are cut to it, as Ollama's OpenAI layer does (it sends no
    `truncate`, so its default holds); r1 also reads Ollama's `truncate`, false to refuse them instead."""
    body = await read_json(request)
    model = required_str(body, "model")
    inputs = embedding_inputs(body)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise BadRequest(f"field 'encoding_format' must be \"float\" or \"base64\", not {json.dumps(encoding)}")
    result = await embed(request.app[CORE], embed_request(body, model, inputs), request.path)
    as_base64 = encoding == "base64"
    return web.json_response({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": base64_floats(v) if as_base64 else v}
                 for i, v in enumerate(result["embeddings"])],
        "model": model,
        "usage": {"prompt_tokens": result["prompt_eval_count"], "total_tokens": result["prompt_eval_count"]},
    })
