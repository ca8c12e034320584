"""Anthropic's context editing (`context_management` on /v1/messages): the edits a request asks for,
checked, and what the answer reports of them (`context_management.applied_edits`).

r1 never shows a model its past thinking (as Ollama does), whatever an edit's `keep` says, so
clear_thinking_20251015 is always applied, to every assistant turn that holds thinking blocks, and the
answer says so. Its cleared_input_tokens is 0: the blocks go before the prompt is built, so r1 never
tokenizes them. The other edits are refused, never ignored: clear_tool_uses_20250919 clears tool results
once the prompt passes a count of input tokens, which r1 has only after it built and tokenized the
prompt; compact_20260112 asks the model for a summary, a second generation r1 does not run.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import BadRequest

Json = dict[str, Any]

CLEAR_THINKING = "clear_thinking_20251015"
REFUSED_EDITS = {
    "clear_tool_uses_20250919": "r1 keeps every tool result (it would have to count the prompt's tokens before "
                                "building it to know when to clear them)",
    "compact_20260112": "r1 does not summarise a conversation (a second generation per request)",
}
THINKING_BLOCKS = ("thinking", "redacted_thinking")


def context_edits(body: Json) -> list[Json]:
    """The edits `context_management` asks for, each checked: a 400 names the one r1 cannot take."""
    value = body.get("context_management")
    if value is None:
        return []
    edits = value.get("edits", []) if isinstance(value, dict) else None
    if not isinstance(edits, list):
        raise BadRequest("field 'context_management' must be {\"edits\": [...]}, like "
                         "{\"edits\": [{\"type\": \"clear_thinking_20251015\"}]}")
    for n, edit in enumerate(edits):
        check_edit(edit, f"context_management.edits[{n}]")
    return edits


def check_edit(edit: Any, where: str) -> None:
    kind = edit.get("type") if isinstance(edit, dict) else None
    if kind in REFUSED_EDITS:
        raise BadRequest(f"{where}.type {kind!r} is not supported: {REFUSED_EDITS[kind]}; leave this edit out")
    if kind != CLEAR_THINKING:
        raise BadRequest(f"{where}.type must be {CLEAR_THINKING!r}, the one edit r1 takes, not {json.dumps(kind)}")
    unknown = sorted(set(edit) - {"type", "keep"})
    if unknown:
        raise BadRequest(f"{where}.{unknown[0]} is not a field of {CLEAR_THINKING}; it takes 'keep' only")
    if not valid_keep(edit.get("keep")):
        raise BadRequest(f"{where}.keep must be \"all\", {{\"type\": \"all\"}} or "
                         "{\"type\": \"thinking_turns\", \"value\": N}")


def valid_keep(keep: Any) -> bool:
    """How many recent turns keep their thinking: r1 keeps none (see above), but the shape is Anthropic's."""
    if keep is None or keep == "all":
        return True
    if not isinstance(keep, dict):
        return False
    value = keep.get("value")
    if keep.get("type") == "all":
        return set(keep) == {"type"}
    return (keep.get("type") == "thinking_turns" and set(keep) == {"type", "value"} and isinstance(value, int)
            and not isinstance(value, bool) and value >= 0)


def applied_edits(body: Json) -> Json | None:
    """The answer's `context_management`, for a request that sent one (checked by context_edits)."""
    if body.get("context_management") is None:
        return None
    turns = cleared_turns(body["messages"])
    if not turns or not context_edits(body):  # the only edit it can hold is CLEAR_THINKING
        return {"applied_edits": []}
    return {"applied_edits": [{"type": CLEAR_THINKING, "cleared_thinking_turns": turns, "cleared_input_tokens": 0}]}


def cleared_turns(messages: list[Json]) -> int:
    """The assistant turns that hold thinking blocks: every one of them loses them."""
    return sum(1 for m in messages if m.get("role") == "assistant" and isinstance(m.get("content"), list)
               and any(isinstance(block, dict) and block.get("type") in THINKING_BLOCKS for block in m["content"]))
