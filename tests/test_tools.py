"""Tool calls parsed out of answers, in the wrappings chat templates ask for."""

from __future__ import annotations

import pytest

from r1.daemon.tools import may_be_tool_call, parse_tool_calls

pytestmark = pytest.mark.unit  # the fast lane (docs/development.md)

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
WEATHER = {"function": {"name": "get_weather", "arguments": {"city": "Madrid"}}}


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "arguments": {"city": "Madrid"}}',
    '{"name": "get_weather", "parameters": {"city": "Madrid"}}',  # Llama 3.x
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Madrid"}}\n</tool_call>',  # Hermes, Qwen
    '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Madrid"}}]',  # Mistral
    '{"name": "get_weather", "arguments": {"city": "Madrid"}}\n</tool_call>',  # the prompt opened <tool_call>
    '{"function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Madrid\\"}"}}',  # arguments as a string
])
def test_each_wrapping_gives_the_same_call(text: str) -> None:
    assert parse_tool_calls(text, TOOLS) == [WEATHER]


def test_several_calls_in_order() -> None:
    text = ('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>\n'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Madrid"}}</tool_call>')
    assert [c["function"]["name"] for c in parse_tool_calls(text, TOOLS)] == ["add", "get_weather"]


@pytest.mark.parametrize("text", [
    "The weather in Madrid is sunny.",
    '{"name": "launch_rockets", "arguments": {}}',  # a tool nobody offered
    '{"city": "Madrid"}',  # JSON, but no call
    'Sure: <tool_call>{"name": "add", "arguments": {}}</tool_call>',  # prose around it
    '{"name": "add", "arguments": {"a": 1',  # cut short
])
def test_anything_else_stays_text(text: str) -> None:
    assert parse_tool_calls(text, TOOLS) == []


def test_what_may_still_become_a_call() -> None:
    assert may_be_tool_call("  {") and may_be_tool_call("<tool_") and may_be_tool_call("[TOOL")
    assert not may_be_tool_call("The") and not may_be_tool_call("<b>")
