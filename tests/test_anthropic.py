"""Anthropic's Messages API (/v1/messages), judged by the official `anthropic` client: end to end over
the session daemon's Unix socket with real models, and the x-api-key guard in-process over TCP."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anthropic
import pytest

from tests.support.daemons import Daemon, over_socket
from tests.support.inprocess import InProcess
from tests.support.tinymodels import THINK_TEMPLATE

# This client has no sampling arguments (newer Claude models take none); r1 reads Anthropic's fields.
GREEDY: dict[str, Any] = {"extra_body": {"temperature": 0, "top_k": 1}}
HELLO = [{"role": "user", "content": "Name a color."}]
WEATHER = {"name": "get_weather", "description": "The current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                            "required": ["city"]}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(gemma_daemon: Daemon) -> Iterator[anthropic.Anthropic]:
    """The official client, over the daemon's socket."""
    with over_socket(gemma_daemon) as http:
        yield anthropic.Anthropic(base_url="http://localhost", api_key="r1", http_client=http, max_retries=0)


def test_a_message_streamed_and_not(client: anthropic.Anthropic) -> None:
    kw: dict[str, Any] = {"model": "gemma-chat", "messages": HELLO, "max_tokens": 12, **GREEDY}
    message = client.messages.create(**kw, system=[{"type": "text", "text": "Be brief."}], metadata={"user_id": "u"})
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == "gemma-chat" and message.stop_reason in ("end_turn", "max_tokens")
    [block] = message.content
    assert block.type == "text" and block.text.strip()
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) > 5
    assert 1 <= message.usage.output_tokens <= 12
    with client.messages.stream(**kw, system="Be brief.") as stream:
        events = list(stream)
        streamed = stream.get_final_message()
    names = [e.type for e in events]
    assert names[0] == "message_start" and names[-1] == "message_stop" and names[-2] == "message_delta"
    assert names[1] == "content_block_start" and "content_block_stop" in names
    assert streamed.content[0].type == "text" and streamed.content[0].text == block.text  # greedy: the same words
    assert streamed.stop_reason == message.stop_reason and streamed.usage.output_tokens == message.usage.output_tokens
    # a stop sequence ends the answer before it: the text never holds it
    stopped = client.messages.create(**{**kw, "max_tokens": 24}, stop_sequences=[block.text.strip()[:2]])
    assert block.text.strip()[:2] not in stopped.content[0].text


def test_a_tool_round_trip(client: anthropic.Anthropic) -> None:
    # tool_choice "tool": a grammar lets the model write nothing but a call of that tool.
    message = client.messages.create(model="gemma-tools", messages=QUESTION, tools=[WEATHER], max_tokens=40,
                                     tool_choice={"type": "tool", "name": "get_weather"}, **GREEDY)
    assert message.stop_reason == "tool_use"
    [call] = message.content
    assert call.type == "tool_use" and call.id.startswith("toolu_") and call.name == "get_weather"
    assert isinstance(call.input["city"], str) and call.input["city"]
    with client.messages.stream(model="gemma-tools", messages=QUESTION, tools=[WEATHER], max_tokens=40,
                                tool_choice={"type": "any"}, **GREEDY) as stream:
        deltas = [e.delta for e in stream if e.type == "content_block_delta"]
        streamed = stream.get_final_message()
    assert [d.type for d in deltas] == ["input_json_delta"]
    assert streamed.stop_reason == "tool_use" and streamed.content[0].input == call.input
    # The call and its result go back through the template (it raises unless the result has its tool's name).
    answer = client.messages.create(model="gemma-tools", tools=[WEATHER], max_tokens=10, **GREEDY, messages=[
        *QUESTION, {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name,
                                                       "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": [{"type": "text", "text": "Sunny, 21 C"}]}]}])
    assert answer.stop_reason in ("end_turn", "max_tokens") and answer.content[0].type == "text"
    assert answer.usage.input_tokens + (answer.usage.cache_read_input_tokens or 0) > 60
    with pytest.raises(anthropic.BadRequestError) as caught:  # a result for no call of the conversation
        client.messages.create(model="gemma-tools", tools=[WEATHER], max_tokens=10, messages=[
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "22 C"}]}])
    assert "toolu_x" in caught.value.message
    with pytest.raises(anthropic.BadRequestError):  # forcing a call while thinking: as Anthropic, refused
        client.messages.create(model="gemma-tools", messages=QUESTION, tools=[WEATHER], max_tokens=10,
                               tool_choice={"type": "any"}, thinking={"type": "enabled", "budget_tokens": 1024})


def test_thinking_blocks_when_enabled(client: anthropic.Anthropic) -> None:
    kw: dict[str, Any] = {"model": "thinker", "messages": [{"role": "user", "content": "2+2?"}], "max_tokens": 8,
                          **GREEDY}
    enabled = {"type": "enabled", "budget_tokens": 1024}
    message = client.messages.create(**kw, thinking=enabled)
    # A random-weight model never closes the block its template opened: all it wrote is thinking.
    [thought] = message.content
    assert thought.type == "thinking" and thought.thinking and thought.signature
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 8
    with client.messages.stream(**kw, thinking=enabled) as stream:
        events = list(stream)
        streamed = stream.get_final_message()
    deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
    assert set(deltas) == {"thinking_delta", "signature_delta"} and deltas[-1] == "signature_delta"
    assert streamed.content[0].type == "thinking" and streamed.content[0].thinking == thought.thinking
    for hidden in (client.messages.create(**kw), client.messages.create(**kw, thinking={"type": "disabled"})):
        assert [b.type for b in hidden.content] == ["text"] and hidden.content[0].text == ""


def test_output_config_json_schema(client: anthropic.Anthropic) -> None:
    schema = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}}, "required": ["color"],
              "additionalProperties": False}
    message = client.messages.create(model="smollm2:135m", messages=HELLO, max_tokens=40, **GREEDY,
                                     output_config={"format": {"type": "json_schema", "schema": schema}})
    assert json.loads(message.content[0].text)["color"] in ("red", "green", "blue")
    # effort is r1's think level (a budget of thinking tokens on models whose template reads no level)
    assert client.messages.create(model="smollm2:135m", messages=HELLO, max_tokens=5, output_config={"effort": "low"})
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="smollm2:135m", messages=HELLO, max_tokens=5, output_config={"effort": "extreme"})
    assert "output_config.effort must be low, medium, high or max" in caught.value.message


def test_count_tokens(client: anthropic.Anthropic) -> None:
    short = client.messages.count_tokens(model="gemma-chat", messages=HELLO)
    longer = client.messages.count_tokens(model="gemma-chat", system="You answer in one word.", messages=[
        {"role": "user", "content": "Name a color, any color you like, from the rainbow."}])
    assert 0 < short.input_tokens < longer.input_tokens
    with_tools = client.messages.count_tokens(model="gemma-tools", messages=QUESTION, tools=[WEATHER])
    without = client.messages.count_tokens(model="gemma-tools", messages=QUESTION)
    assert with_tools.input_tokens > without.input_tokens  # the template shows the model its tools


def test_errors_have_anthropics_shape(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", messages=HELLO, max_tokens=5)
    assert missing.value.body["type"] == "error" and missing.value.body["error"]["type"] == "not_found_error"
    assert "no-such-model" in missing.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as no_max:
        client.post("/v1/messages", cast_to=object, body={"model": "gemma-chat", "messages": HELLO})
    assert no_max.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                            "message": no_max.value.body["error"]["message"]}}
    assert "max_tokens" in no_max.value.body["error"]["message"]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    for block, word in ((image, "images"), ({"type": "document", "source": {"type": "text", "data": "x",
                                                                             "media_type": "text/plain"}}, "document")):
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(model="gemma-chat", max_tokens=5, messages=[{"role": "user", "content": [block]}])
        assert word in caught.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as server_tool:
        client.messages.create(model="gemma-tools", max_tokens=5, messages=QUESTION,
                               tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert "web_search" in server_tool.value.message
    with pytest.raises(anthropic.BadRequestError):  # a tool without a schema object
        client.messages.create(model="gemma-tools", max_tokens=5, messages=QUESTION,
                               tools=[{"name": "f", "input_schema": "not a schema"}])
    with pytest.raises(anthropic.BadRequestError):  # thinking on a model whose template has no think block
        client.messages.create(model="gemma-chat", max_tokens=5, messages=HELLO,
                               thinking={"type": "enabled", "budget_tokens": 1024})


@pytest.mark.unit
def test_an_error_in_a_stream_is_an_error_event() -> None:
    """After the first byte an error goes in-band: Anthropic's `error` event with the same body."""
    from r1.daemon.api.http import NAMED_SSE as ANTHROPIC_SSE
    from r1.daemon.api.http import error_body

    name, data = ANTHROPIC_SSE.frame(error_body("/v1/messages", 503, "busy")).decode().removesuffix("\n\n").split("\n")
    assert name == "event: error" and ANTHROPIC_SSE.trailer == b""
    assert json.loads(data.removeprefix("data: ")) == {"type": "error", "error": {"type": "overloaded_error",
                                                                                   "message": "busy"}}
    assert error_body("/v1/messages/count_tokens", 500, "x")["error"]["type"] == "api_error"
    assert error_body("/v1/chat/completions", 404, "x")["error"]["type"] == "not_found_error"  # OpenAI's, as before


async def test_x_api_key_is_the_key_over_tcp(make_api: Callable[..., Awaitable[InProcess]]) -> None:
    api = await make_api(R1_API_KEY="s3cret")
    body = {"model": "m", "messages": HELLO}
    response = await api.client.post("/v1/messages", json=body, headers={"x-api-key": "wrong"})
    assert response.status == 401
    assert (await response.json())["error"]["type"] == "authentication_error"
    response = await api.client.post("/v1/messages", json=body, headers={"x-api-key": "s3cret",
                                                                         "anthropic-version": "2023-06-01"})
    assert response.status == 400  # past the guard: the missing max_tokens is what is wrong now
    assert (await response.json())["error"]["type"] == "invalid_request_error"
    assert (await api.client.get("/api/tags", headers={"X-Api-Key": "s3cret"})).status == 200


def test_a_thinking_budget_closes_the_block_and_the_answer_follows(client: anthropic.Anthropic,
                                                                    gemma_daemon: Daemon) -> None:
    # SmolLM2 (a real vocabulary, so the closing tag the runner writes reads back as one) under a template
    # that opens <think>: left alone it thinks on; with a budget of 3 the answer starts after 3 tokens.
    status, made = gemma_daemon.request("POST", "/api/create", {"model": "smollm2-thinks", "from": "smollm2:135m",
                                                                 "template": THINK_TEMPLATE, "stream": False})
    assert status == 200, made
    kw: dict[str, Any] = {"model": "smollm2-thinks", "max_tokens": 24, "messages": [{"role": "user", "content": "Is 7 prime?"}],
                          "extra_body": {"temperature": 0}}
    free = client.messages.create(**kw, thinking={"type": "enabled", "budget_tokens": 1024})
    assert [b.type for b in free.content] == ["thinking"]  # 24 tokens of thinking, never closed
    budgeted = client.messages.create(**kw, thinking={"type": "enabled", "budget_tokens": 3})
    assert [b.type for b in budgeted.content] == ["thinking", "text"] and budgeted.content[1].text.strip()
    assert len(budgeted.content[0].thinking.split()) <= 3 < len(free.content[0].thinking.split())
