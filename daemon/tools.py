"""Tool calls in a model's answer: the JSON that tool-trained chat templates ask models to write.

Templates differ in the wrapping (Hermes and Qwen: `<tool_call>{...}</tool_call>`; Llama 3.x:
a bare `{"name", "parameters"}`; Mistral: `[TOOL_CALLS] [...]`), not in the content: a
function name and its arguments. An answer that is one or more such calls, naming tools
the request offered, becomes `tool_calls` in Ollama's shape; anything else stays text.
A request that must call a tool gets `forced_call`'s schema as its format: the grammar lets
the model write nothing but such a call.
"""

from __future__ import annotations

import json
import re
from typing import Any

# What an answer that is a tool call starts with; other answers stream as they come.
OPENERS = ("{", "[", "<tool_call>", "[TOOL_CALLS]")
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def may_be_tool_call(text: str) -> bool:
    """Whether the start of an answer could still turn out to be a tool call."""
    head = text.lstrip()
    return any(head.startswith(o) or o.startswith(head) for o in OPENERS)


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool's or call's function object: OpenAI's nest it under "function", others give it flat."""
    function = tool.get("function")
    return function if isinstance(function, dict) else tool


def tool_names(tools: list[Any]) -> set[str]:
    names = set()
    for tool in tools:
        if isinstance(tool, dict):
            function = _function(tool)
            if isinstance(function.get("name"), str):
                names.add(function["name"])
    return names


def _call(item: Any, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    function = _function(item)
    name = function.get("name")
    arguments = function.get("arguments", function.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or (names and name not in names) or not isinstance(arguments, dict):
        return None
    return {"function": {"name": name, "arguments": arguments}}


def parse_tool_calls(text: str, tools: list[Any]) -> list[dict[str, Any]]:
    """The calls `text` makes, or [] when it is not (only) tool calls."""
    text = text.strip().removeprefix("[TOOL_CALLS]").strip()
    if "<tool_call>" not in text:  # the template opened the tag in the prompt: only its end was written
        text = text.removesuffix("</tool_call>").strip()
    tagged = _TAGGED.findall(text)
    if tagged:
        if _TAGGED.sub("", text).strip():
            return []  # prose around the calls: an answer that mentions tools, not a call
        chunks = tagged
    else:
        chunks = [text]
    items: list[Any] = []
    for chunk in chunks:
        try:
            value = json.loads(chunk)
        except json.JSONDecodeError:
            return []
        items.extend(value if isinstance(value, list) else [value])
    names = tool_names(tools)
    calls = [_call(item, names) for item in items]
    return calls if calls and all(calls) else []  # type: ignore[return-value]


def forced_call(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON schema that lets the model write nothing but a call of one of `tools` (function tools in
    Ollama's shape): how r1 honours a tool choice that forces a call, as parse_tool_calls reads it back."""
    calls = [{"type": "object", "required": ["name", "arguments"], "properties": {
        "name": {"type": "string", "enum": [t["function"]["name"]]},
        "arguments": t["function"].get("parameters") or {"type": "object"}}} for t in tools]
    return calls[0] if len(calls) == 1 else {"anyOf": calls}
