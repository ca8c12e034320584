"""Rendering a converted template the way Ollama executes its Go template (template/template.go).

r1's chat data (Ollama's API shapes: messages with role, content, thinking, tool_calls,
tool_name; OpenAI-style tools) becomes Ollama's template values: consecutive messages of one
role are merged (tool results excepted), .System is every system message joined, tools and
tool calls are the typed values of values.py. Legacy templates then run once per turn.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .emit import HEADER
from .values import (ArgsMap, GoMap, GoSlice, Message, OrderedMap, PropertiesMap, PropertyType, Tool, ToolCall, ToolCallFunction,
                     ToolFunction, ToolParameters, ToolProperty, ToolsSlice, from_json)

_MODE = re.compile(re.escape(HEADER) + r"(messages|legacy); uses: ([^)]*)\)")


def converted_mode(source: str) -> str | None:
    """"messages" or "legacy" for Jinja converted from a Go template; None for any other."""
    match = _MODE.match(source)
    return match.group(1) if match else None


def converted_uses(source: str) -> frozenset[str]:
    """The fields a converted template reads, lowercased as Ollama's Template.Vars() gives them
    ("tools", "suffix", "think"...); empty for any other template."""
    match = _MODE.match(source)
    return frozenset(match.group(2).split(", ")) if match and match.group(2) else frozenset()


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> GoSlice:
    return GoSlice([str(v) for v in value] if isinstance(value, list) else None)


def collate(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Ollama's collate: the system messages joined, and the messages with consecutive ones of
    one role merged (their contents joined by a blank line), except tool results."""
    system: list[str] = []
    collated: list[dict[str, Any]] = []
    for message in messages:
        role = _text(message.get("role")).lower()  # Ollama's API lowercases roles as it reads them
        content = _text(message.get("content"))
        if role == "system":
            system.append(content)
        if collated and collated[-1]["role"] == role and role != "tool":
            collated[-1]["content"] += "\n\n" + content
        else:
            collated.append({**message, "role": role, "content": content})
    return "\n\n".join(system), collated


def _arguments(value: Any) -> ArgsMap:
    if isinstance(value, str):  # OpenAI clients send arguments as a JSON string
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    return ArgsMap(from_json(value) if isinstance(value, dict) else None)


def _tool_call(call: Any) -> ToolCall:
    function = _object(_object(call).get("function"))
    index = function.get("index")
    return ToolCall(ID=_text(_object(call).get("id")), Function=ToolCallFunction(
        Index=index if isinstance(index, int) and not isinstance(index, bool) else 0,
        Name=_text(function.get("name")), Arguments=_arguments(function.get("arguments"))))


def _message(message: dict[str, Any]) -> Message:
    calls = message.get("tool_calls")
    return Message(Role=message["role"], Content=message["content"], Thinking=_text(message.get("thinking")),
                   ToolCalls=GoSlice([_tool_call(c) for c in calls] if isinstance(calls, list) and calls else None),
                   ToolName=_text(message.get("tool_name")), ToolCallID=_text(message.get("tool_call_id")))


def _property(value: Any) -> ToolProperty:
    """api.ToolProperty: the JSON schema keys Ollama keeps (others are dropped, as Go's decoding drops them)."""
    d = _object(value)
    kind = d.get("type")
    nested = d.get("properties")
    any_of = d.get("anyOf")
    return ToolProperty(
        AnyOf=GoSlice([_property(p) for p in any_of] if isinstance(any_of, list) else None),
        Type=PropertyType([kind] if isinstance(kind, str) else _strings(kind)),
        Items=from_json(d.get("items")),
        Description=_text(d.get("description")),
        Enum=GoSlice(from_json(d["enum"]) if isinstance(d.get("enum"), list) else None),
        Properties=OrderedMap({k: _property(v) for k, v in nested.items()}) if isinstance(nested, dict) else None,
        Required=_strings(d.get("required")))


def _tool(tool: Any) -> Tool:
    t = _object(tool)
    function = _object(t.get("function"))
    parameters = _object(function.get("parameters"))
    properties = parameters.get("properties")
    return Tool(Type=_text(t.get("type")), Items=from_json(t.get("items")), Function=ToolFunction(
        Name=_text(function.get("name")), Description=_text(function.get("description")),
        Parameters=ToolParameters(
            Type=_text(parameters.get("type")), Defs=from_json(parameters.get("$defs")),
            Items=from_json(parameters.get("items")), Required=_strings(parameters.get("required")),
            Properties=PropertiesMap({k: _property(v) for k, v in properties.items()}
                                     if isinstance(properties, dict) else None))))


def execute(template: Any, mode: str, messages: list[dict[str, Any]], *,
            tools: list[Any] | None = None, think: bool | None = None, suffix: str | None = None) -> str:
    """The prompt: `template` is the compiled Jinja of a converted template, `mode` its header's."""
    system, collated = collate(messages)
    thinking = {"Think": bool(think), "ThinkLevel": "medium" if think else "", "IsThinkSet": think is not None}
    if suffix is not None:  # fill in the middle: Ollama runs the whole template on the prompt and suffix alone
        prompt = next((m["content"] for m in reversed(collated) if m["role"] == "user"), "")
        return str(template.render(root=GoMap({"Prompt": prompt, "Suffix": suffix, "Response": ""}), cut=False))
    if mode == "messages":
        return str(template.render(root=GoMap({
            "System": system, "Messages": GoSlice([_message(m) for m in collated] or None),
            "Tools": ToolsSlice([_tool(t) for t in tools] if tools is not None else None),
            "Response": "", **thinking})))
    # Legacy: a turn is a system prompt, a prompt and the answer; the last turn is cut after
    # {{ .Response }} (tool messages have no place in these templates and are left out).
    out: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}

    def run(cut: bool) -> None:
        out.append(template.render(root=GoMap({**turn, **thinking}), cut=cut))
        turn.update(System="", Prompt="", Response="")

    for message in collated:
        role, content = message["role"], message["content"]
        if role == "system":
            if turn["Prompt"] or turn["Response"]:
                run(cut=False)
            turn["System"] = content
        elif role == "user":
            if turn["Response"]:
                run(cut=False)
            turn["Prompt"] = content
        elif role == "assistant":
            turn["Response"] = content
    run(cut=True)
    return "".join(out)
