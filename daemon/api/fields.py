"""Checks of request fields that both dialects share: each returns the value the core takes,
or raises BadRequest naming the field and what it must be."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, parse_duration
from ..embedding import EmbedRequest
from ..errors import BadRequest
from ..options.check import check_options
from ..tools import forced_call

Json = dict[str, Any]


def get_str(body: Json, *keys: str) -> str | None:
    """The first of `keys` present (Ollama accepts both "model" and the older "name"), or None."""
    for key in keys:
        if body.get(key) is not None:
            value = body[key]
            if not isinstance(value, str):
                raise BadRequest(f"field '{key}' must be a string, not {type(value).__name__}")
            return value
    return None


def required_str(body: Json, *keys: str) -> str:
    """As get_str, for a field the request cannot do without."""
    value = get_str(body, *keys)
    if value is None:
        raise BadRequest(f"field '{keys[0]}' is required")
    return value


# Linux's limits (macOS's are near): a longer path, or name in it, is an OSError wherever it is looked up.
PATH_MAX, NAME_MAX = 4096, 255


def check_path_length(body: Json, *keys: str) -> None:
    """A 400 for a path field longer than any path can be, before anything looks it up on the disk."""
    for key in keys:
        value = body.get(key)
        if isinstance(value, str) and (len(value.encode()) >= PATH_MAX
                                       or any(len(name.encode()) > NAME_MAX for name in value.split("/"))):
            raise BadRequest(f"field '{key}' is longer than a path can be ({PATH_MAX} bytes, {NAME_MAX} a name)")


def get_bool(body: Json, key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"field '{key}' must be true or false, not {json.dumps(value)}")
    return value


# A keep_alive longer than this is forever, as a negative one is: an expiry that far off fits no timestamp
# (/api/ps), and a whole number of 400 digits no float.
KEEP_ALIVE_FOREVER = 100 * 365 * 86400


def keep_alive(body: Json) -> float | None:
    """Seconds from Ollama's keep_alive ("5m", 300, "-1", 0); None: the daemon's default."""
    value = body.get("keep_alive")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = parse_duration(value, "keep_alive")
        except ConfigError as exc:
            raise BadRequest(str(exc)) from exc
    elif not isinstance(value, (int, float)) or isinstance(value, bool):
        raise BadRequest(f"field 'keep_alive' must be a duration like \"5m\" or a number of seconds, not {value!r}")
    return -1.0 if value < 0 or value > KEEP_ALIVE_FOREVER else float(value)


THINK_LEVELS = ("low", "medium", "high")


@dataclass(frozen=True)
class FieldNames:
    """What a dialect calls the fields that the shared checks name in their errors, so that each
    error names the field the client sent."""

    think: str  # the switch for thinking: "think", "thinking", "reasoning_effort", "reasoning.effort"
    format: str  # what shapes the answer as JSON: "format", "output_config.format", "response_format", ...


def forced_format(tools: list[Any] | None, forcing: bool, shaped: str | Json | None, thinking: bool | None,
                  names: FieldNames) -> tuple[str | Json | None, bool | None]:
    """The format and the think switch of a request whose tool_choice may force a call (Anthropic's any and
    tool, OpenAI's required and a named function). Forced, a grammar lets the model write nothing but a call
    of one of `tools` from its first token: nothing else may shape the answer, and the model does not think
    first (a request that turns thinking on is refused, as Anthropic refuses it)."""
    if not forcing:
        return shaped, thinking
    if not tools:
        raise BadRequest("field 'tool_choice' forces a call, but 'tools' offers no function to call")
    if shaped is not None:
        raise BadRequest(f"{names.format} and a tool_choice that forces a call cannot both shape the answer; "
                         "leave one out")
    if thinking:
        raise BadRequest(f"{names.think} may not turn thinking on while tool_choice forces a call: the answer is "
                         "the call from its first token; leave it out or let tool_choice be auto")
    return forced_call(tools), False


def think(body: Json) -> bool | None:
    value = body.get("think")
    if value is None or isinstance(value, bool):
        return value
    if value in THINK_LEVELS:  # a level: thinking on, that much of it (effort())
        return True
    raise BadRequest(f"field 'think' must be true, false, \"low\", \"medium\" or \"high\", not {value!r}")


def think_level(body: Json) -> str | None:
    """Ollama's think level, when `think` gives one."""
    value = body.get("think")
    return value if value in THINK_LEVELS else None


def output_format(body: Json) -> str | Json | None:
    value = body.get("format")
    if value in (None, ""):
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise BadRequest(f"field 'format' must be \"json\" or a JSON schema object, not {value!r}")


def messages(body: Json) -> list[Json]:
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
        # Past thinking is not sent back to the model, as Ollama does.
        out = {k: v for k, v in message.items() if k not in ("thinking", "images")} | {"content": content}
        if message.get("images"):
            out["images"] = images(message["images"], f"messages[{n}].images")
        checked.append(out)
    images_within_bounds([image for m in checked for image in m.get("images", [])])
    return checked


TEXT_ONLY = "r1 serves text models only"

# Bounds on images, decoded (constants until the lead settles whether they are settings): one image as
# OpenAI bounds one, and all of a request's. app.py lets request bodies be large enough for them in base64.
MAX_IMAGE_BYTES = 20 * 1024**2
MAX_REQUEST_IMAGE_BYTES = 50 * 1024**2
# A request body holds those in base64, and the text (aiohttp's default bound is 1 MiB).
MAX_BODY_BYTES = MAX_REQUEST_IMAGE_BYTES * 4 // 3 + 16 * 1024**2
# What llama.cpp decodes (stb_image), by their first bytes; WebP is not among them.
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
IMAGE_KINDS = "PNG, JPEG, GIF or BMP"


def image(value: Any, where: str) -> str:
    """A base64 image, checked: it decodes, within MAX_IMAGE_BYTES, to an image llama.cpp reads."""
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a base64 string of an image ({IMAGE_KINDS}), not {type(value).__name__}")
    if len(value) * 3 // 4 > MAX_IMAGE_BYTES:
        raise BadRequest(f"{where} is larger than r1's limit of {MAX_IMAGE_BYTES // 1024**2} MiB an image; "
                         "send a smaller one")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{where} is not valid base64 ({exc}); send the image's bytes base64-encoded") from exc
    if not any(data.startswith(signature) for signature in IMAGE_SIGNATURES):
        webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        raise BadRequest(f"{where} is {'a WebP image' if webp else 'not an image r1 can read'}; "
                         f"send {IMAGE_KINDS}")
    return value


def images(value: Any, where: str) -> list[str]:
    """Ollama's `images`: a list of base64 images, each checked."""
    if not isinstance(value, list):
        raise BadRequest(f"{where} must be a list of base64 strings, one per image")
    return [image(item, f"{where}[{n}]") for n, item in enumerate(value)]


def images_within_bounds(encoded: list[str]) -> None:
    if sum(len(item) * 3 // 4 for item in encoded) > MAX_REQUEST_IMAGE_BYTES:
        raise BadRequest(f"the request's images come to more than r1's limit of "
                         f"{MAX_REQUEST_IMAGE_BYTES // 1024**2} MiB in all; send fewer or smaller ones")


def data_url_image(url: Any, where: str) -> str:
    """An image given by URL (OpenAI's image_url, Responses' input_image): a data URL's base64 image.
    r1 works offline: it fetches no URL."""
    if not isinstance(url, str):
        raise BadRequest(f"{where} must be a data URL string (data:image/png;base64,...)")
    head, _, data = url.partition(",")
    if head.startswith("data:") and head.endswith(";base64"):
        return image(data, where)
    if url.startswith(("http://", "https://")):
        raise BadRequest(f"{where} is a remote URL, and r1 does not fetch URLs (it works offline); "
                         "send the image inline as a data URL (data:image/png;base64,...)")
    raise BadRequest(f"{where} must be a base64 data URL (data:image/png;base64,...)")


MAX_TOP_LOGPROBS = 20  # Ollama's and OpenAI's bound


def logprobs(body: Json) -> int | None:
    """`logprobs` (true/false) and `top_logprobs` (0-20), as Ollama and OpenAI's chat take them: how many
    alternatives to give with each token's log probability, or None for no log probabilities."""
    wanted = get_bool(body, "logprobs", False)
    top = body.get("top_logprobs")
    if top is None:
        return 0 if wanted else None
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise BadRequest(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, not {json.dumps(top)}")
    if top and not wanted:
        raise BadRequest("field 'top_logprobs' needs 'logprobs': true")
    return top if wanted else None


def context(body: Json) -> list[int] | None:
    """Ollama's `context`: the token ids an earlier /api/generate returned, to continue from."""
    value = body.get("context")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise BadRequest("field 'context' must be the list of token ids an earlier /api/generate returned")
    return value


def tools(body: Json) -> list[Any] | None:
    value = body.get("tools")
    if value is not None and not isinstance(value, list):
        raise BadRequest("field 'tools' must be a list")
    return value or None


def positive_int(body: Json, key: str) -> int | None:
    """An optional field that must be a whole number of at least 1."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"field '{key}' must be a positive whole number, not {json.dumps(value)}")
    return value


def dimensions(body: Json) -> int | None:
    """The vector width an embedding request asks for; whether the model can give it is the core's check."""
    return positive_int(body, "dimensions")


def embed_request(body: Json, model: str, inputs: list[str]) -> EmbedRequest:
    """What every embedding route reads beyond its model and inputs. `truncate` is Ollama's field
    (default on); /v1/embeddings reads it too, though OpenAI has none."""
    return EmbedRequest(model=model, inputs=inputs, options=check_options(body.get("options")),
                        keep_alive=keep_alive(body), truncate=get_bool(body, "truncate", True),
                        dimensions=dimensions(body))
