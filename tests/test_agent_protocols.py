"""What coding agents send, accepted the way Anthropic and OpenAI define it (issue 26): Claude Code's
context_management, adaptive thinking and system-role messages on /v1/messages; Codex's namespace and
hosted tools on /v1/responses; OpenAI's tool_choice required and named, enforced with a grammar on both
OpenAI routes. In-process with scripted runners (what the core sent the runner is checked) and judged by
the official clients; the forced calls end to end with SmolLM2 135M; the agents' recorded requests
(tests/agents/) replayed against a real daemon."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import ollama
import openai
import pytest

from tests.support.daemons import Daemon, over_socket, private_daemon
from tests.support.inprocess import InProcess
from tests.support.tinymodels import THINK_TEMPLATE, TOOL_TEMPLATE, write_quiet_gguf

HI = [{"role": "user", "content": "hi"}]
CLEAR_THINKING = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
READ = {"type": "function", "name": "read", "description": "Read a file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
NAMESPACE = {"type": "namespace", "name": "mcp__fs__", "description": "The files MCP server", "tools": [READ]}
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"],
           "additionalProperties": False}
CHAT_WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                                 "parameters": WEATHER}}
CHAT_TIME = {"type": "function", "function": {"name": "get_time", "description": "The time in a city",
                                              "parameters": WEATHER}}


@pytest.fixture
async def models(api: InProcess) -> InProcess:
    """chat (ChatML: no tools, no thinking), tooled (renders tools) and thinker (opens <think>)."""
    await api.add_model("chat")
    await api.add_model("tooled", chat_template=TOOL_TEMPLATE)
    await api.add_model("thinker", chat_template=THINK_TEMPLATE)
    return api


@pytest.fixture
async def claude(api: InProcess) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=str(api.client.make_url("")), api_key="r1", max_retries=0) as client:
        yield client


@pytest.fixture
async def oai(api: InProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=str(api.client.make_url("/v1")), api_key="r1", max_retries=0) as client:
        yield client


def sent_messages(api: InProcess) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in api.runners.requests[-1]["messages"]]


async def bad_request(call: Any) -> str:
    """The message of the 400 an official client (anthropic or openai) raised, from the dialect's error body."""
    with pytest.raises((anthropic.BadRequestError, openai.BadRequestError)) as caught:
        await call
    body = caught.value.body
    assert isinstance(body, dict)
    return body["error"]["message"] if body.get("type") == "error" else body["message"]


# --- /v1/messages: what Claude Code sends --------------------------------------------------------


async def test_context_management_clearing_thinking_is_applied_and_reported(models: InProcess,
                                                                            claude: anthropic.AsyncAnthropic) -> None:
    beta = ["context-management-2025-06-27"]
    message = await claude.beta.messages.create(model="chat", max_tokens=16, messages=HI, betas=beta,
                                                context_management=CLEAR_THINKING)
    assert message.content[0].text == "Hello, world!"
    assert message.context_management is not None and message.context_management.applied_edits == []
    # Past thinking never reaches the model (as Ollama); the answer says which turns lost it.
    history = [*HI, {"role": "assistant", "content": [{"type": "thinking", "thinking": "Greet back.", "signature": "s"},
                                                      {"type": "text", "text": "Hello"}]},
               {"role": "user", "content": "again"}]
    edits = {"edits": [{"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 1}}]}
    message = await claude.beta.messages.create(model="chat", max_tokens=16, messages=history, betas=beta,
                                                context_management=edits)
    [edit] = message.context_management.applied_edits
    assert (edit.type, edit.cleared_thinking_turns, edit.cleared_input_tokens) == ("clear_thinking_20251015", 1, 0)
    assert sent_messages(models) == [("user", "hi"), ("assistant", "Hello"), ("user", "again")]
    # Streamed, the final message_delta carries it, where Anthropic puts it.
    async with claude.beta.messages.stream(model="chat", max_tokens=16, messages=history, betas=beta,
                                           context_management=edits) as stream:
        deltas = [event for event in [e async for e in stream] if event.type == "message_delta"]
    assert deltas[-1].context_management.applied_edits[0].cleared_thinking_turns == 1
    plain = await claude.messages.create(model="chat", max_tokens=16, messages=HI)
    assert "context_management" not in plain.model_dump(exclude_none=True)  # only for a request that asked


async def test_context_edits_r1_cannot_apply_are_refused_by_name(models: InProcess,
                                                                 claude: anthropic.AsyncAnthropic) -> None:
    def edits(*edit: Any) -> Any:
        return claude.messages.create(model="chat", max_tokens=16, messages=HI,
                                      extra_body={"context_management": {"edits": list(edit)}})

    error = await bad_request(edits({"type": "clear_thinking_20251015"}, {"type": "clear_tool_uses_20250919"}))
    assert "context_management.edits[1].type 'clear_tool_uses_20250919' is not supported" in error
    assert "context_management.edits[0].type" in await bad_request(edits({"type": "compact_20260112"}))
    assert "context_management.edits[0].keep" in await bad_request(edits({"type": "clear_thinking_20251015",
                                                                          "keep": 3}))
    assert "context_management.edits[0].type must be" in await bad_request(edits({"type": "shrink"}))
    assert "field 'context_management' must be" in await bad_request(claude.messages.create(
        model="chat", max_tokens=16, messages=HI, extra_body={"context_management": {"edits": "all"}}))
    assert models.runners.started == []  # all refused before a model loaded


async def test_adaptive_thinking_leaves_it_to_the_model(models: InProcess, claude: anthropic.AsyncAnthropic) -> None:
    # A model that cannot think answers without it: adaptive asks for no more than the model has.
    answer = await claude.messages.create(model="chat", max_tokens=16, messages=HI, thinking={"type": "adaptive"})
    assert answer.content[0].text == "Hello, world!" and "think" not in models.runners.requests[-1]
    # One that thinks does, within r1's budget for the effort asked (THINK_BUDGETS: low is 1024 tokens).
    await claude.messages.create(model="thinker", max_tokens=16, messages=HI, thinking={"type": "adaptive"},
                                 output_config={"effort": "low"})
    assert models.runners.requests[-1]["think_budget"] == 1024
    # A forced call leaves no room to think: the model is told not to, rather than refused.
    await claude.messages.create(model="tooled", max_tokens=16, messages=HI, thinking={"type": "adaptive"},
                                 tools=[{"name": "get_weather", "input_schema": WEATHER}], tool_choice={"type": "any"})
    assert models.runners.requests[-1]["think"] is False and models.runners.requests[-1]["format"]["properties"]


async def test_omitted_thinking_comes_as_empty_blocks_with_a_signature(make_api: Any) -> None:
    api = await make_api(script=["<think>", "Greet", " back.", "</think>", "Hello"])
    await api.add_model("thinker", chat_template=THINK_TEMPLATE)
    async with anthropic.AsyncAnthropic(base_url=str(api.client.make_url("")), api_key="r1", max_retries=0) as claude:
        kw: Any = {"model": "thinker", "max_tokens": 16, "messages": HI}
        shown = await claude.messages.create(**kw, thinking={"type": "adaptive"})
        assert [(b.type, getattr(b, "thinking", None)) for b in shown.content] == [("thinking", "Greet back."),
                                                                                ("text", None)]
        omitted = await claude.messages.create(**kw, thinking={"type": "adaptive", "display": "omitted"})
        assert omitted.content[0].thinking == "" and omitted.content[0].signature == shown.content[0].signature
        async with claude.messages.stream(**kw, thinking={"type": "adaptive", "display": "omitted"}) as stream:
            deltas = [e.delta.type for e in [e async for e in stream] if e.type == "content_block_delta"]
        assert deltas == ["signature_delta", "text_delta"]
        assert "thinking.display" in await bad_request(claude.messages.create(
            **kw, thinking={"type": "adaptive", "display": "full"}))


async def test_a_system_message_among_the_messages_stays_where_it_is(models: InProcess,
                                                                     claude: anthropic.AsyncAnthropic) -> None:
    body: Any = {"messages": [*HI, {"role": "system", "content": "Be brief."}]}
    await claude.messages.create(model="chat", max_tokens=16, messages=HI, system="You are r1.", extra_body=body)
    # In place, as OpenAI's routes keep them: a prompt that only grows keeps its prefix in the runner's slot.
    assert sent_messages(models) == [("system", "You are r1."), ("user", "hi"), ("system", "Be brief.")]
    body = {"messages": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, *HI]}
    await claude.messages.count_tokens(model="chat", messages=HI, extra_body=body)
    assert sent_messages(models) == [("system", "Be brief."), ("user", "hi")]
    body = {"messages": [*HI, {"role": "system", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}]}
    assert "messages[1].content[0] must be a text block" in await bad_request(
        claude.messages.create(model="chat", max_tokens=16, messages=HI, extra_body=body))


async def test_a_refusal_names_the_field_of_the_dialect_that_asked(models: InProcess, claude: anthropic.AsyncAnthropic,
                                                                   oai: openai.AsyncOpenAI) -> None:
    cannot = '"chat" does not support thinking: its template has no think block; leave '
    error = await bad_request(claude.messages.create(model="chat", max_tokens=16, messages=HI,
                                                     thinking={"type": "enabled", "budget_tokens": 1024}))
    assert error.startswith(cannot + "'thinking' out")
    error = await bad_request(oai.chat.completions.create(model="chat", messages=HI, reasoning_effort="high"))
    assert error.startswith(cannot + "'reasoning_effort' out")
    error = await bad_request(oai.responses.create(model="chat", input="hi", reasoning={"effort": "high"}))
    assert error.startswith(cannot + "'reasoning.effort' out")
    with pytest.raises(ollama.ResponseError) as caught:
        await ollama.AsyncClient(host=str(models.client.make_url(""))).chat("chat", HI, think=True)
    assert caught.value.error.startswith(cannot + "'think' out")
    assert models.runners.started == []


# --- /v1/responses: what Codex sends -------------------------------------------------------------


async def test_a_namespace_is_flattened_and_its_calls_come_back_split(make_api: Any) -> None:
    api = await make_api(script=['{"name": "mcp__fs__read", "arguments": {"path": "a.txt"}}'])
    await api.add_model("tooled", chat_template=TOOL_TEMPLATE)
    async with openai.AsyncOpenAI(base_url=str(api.client.make_url("/v1")), api_key="r1", max_retries=0) as client:
        answer = await client.responses.create(model="tooled", input="Read a.txt", tools=[NAMESPACE, {**READ,
                                               "name": "get_time"}])
        assert [t["function"]["name"] for t in api.runners.requests[-1]["tools"]] == ["mcp__fs__read", "get_time"]
        [call] = answer.output
        assert (call.type, call.namespace, call.name, json.loads(call.arguments)) == (
            "function_call", "mcp__fs__", "read", {"path": "a.txt"})
        # Sent back, the call is the model's own name again, and its output follows it.
        await client.responses.create(model="tooled", tools=[NAMESPACE], input=[
            {"role": "user", "content": "Read a.txt"}, call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "hello"}])
    sent = api.runners.requests[-1]["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "mcp__fs__read" and sent[2]["tool_name"] == "mcp__fs__read"


async def test_hosted_tools_are_left_out_with_a_note(models: InProcess, oai: openai.AsyncOpenAI) -> None:
    hosted = [{"type": "web_search"}, {"type": "image_generation"}]
    raw = await oai.responses.with_raw_response.create(model="tooled", input="hi", tools=[*hosted, READ])
    assert raw.headers["x-r1-note"] == ("tools left out, which r1 cannot run: tools[0] (web_search), "
                                        "tools[1] (image_generation)")
    assert [t["function"]["name"] for t in models.runners.requests[-1]["tools"]] == ["read"]
    assert raw.parse().output_text == "Hello, world!"
    streamed = await oai.responses.with_raw_response.create(model="chat", input="hi", tools=hosted, stream=True)
    assert "web_search" in streamed.headers["x-r1-note"] and "tools" not in models.runners.requests[-1]
    # ...unless the request makes one required: a 400 that names tool_choice.
    error = await bad_request(oai.responses.create(model="tooled", input="hi", tools=hosted, tool_choice="required"))
    assert error.startswith('tool_choice "required" leaves the model only tools r1 cannot run (tools[0] (web_search)')
    error = await bad_request(oai.responses.create(model="tooled", input="hi", tools=[*hosted, READ],
                                                   tool_choice={"type": "web_search_preview"}))
    assert error.startswith("tool_choice asks for a tool of type 'web_search_preview'")
    plain = await oai.responses.with_raw_response.create(model="tooled", input="hi", tools=[READ])
    assert "x-r1-note" not in plain.headers


# --- tool_choice required and named: a grammar on both OpenAI routes -----------------------------


async def test_a_forced_call_is_a_grammar_on_both_openai_routes(models: InProcess, oai: openai.AsyncOpenAI) -> None:
    def call_schema(name: str) -> dict[str, Any]:
        return {"type": "object", "required": ["name", "arguments"],
                "properties": {"name": {"type": "string", "enum": [name]}, "arguments": WEATHER}}

    tools = [CHAT_WEATHER, CHAT_TIME]
    await oai.chat.completions.create(model="tooled", messages=HI, tools=tools, tool_choice="required")
    assert models.runners.requests[-1]["format"] == {"anyOf": [call_schema("get_weather"), call_schema("get_time")]}
    await oai.chat.completions.create(model="tooled", messages=HI, tools=tools,
                                      tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert models.runners.requests[-1]["format"] == call_schema("get_time")
    flat = [{"type": "function", **t["function"]} for t in tools]
    await oai.responses.create(model="tooled", input="hi", tools=flat, tool_choice={"type": "function",
                                                                                   "name": "get_weather"})
    assert models.runners.requests[-1]["format"] == call_schema("get_weather")
    await oai.chat.completions.create(model="tooled", messages=HI, tools=tools, tool_choice="auto")
    assert models.runners.requests[-1]["format"] is None


async def test_a_forced_call_conflicts_name_each_dialects_fields(models: InProcess, oai: openai.AsyncOpenAI) -> None:
    chat: dict[str, Any] = {"model": "tooled", "messages": HI, "tools": [CHAT_WEATHER], "tool_choice": "required"}
    error = await bad_request(oai.chat.completions.create(**chat, response_format={"type": "json_object"}))
    assert error.startswith("response_format and a tool_choice that forces a call cannot both shape the answer")
    error = await bad_request(oai.chat.completions.create(**chat, reasoning_effort="high"))
    assert error.startswith("reasoning_effort may not turn thinking on while tool_choice forces a call")
    flat = {"type": "function", **CHAT_WEATHER["function"]}
    responses: dict[str, Any] = {"model": "tooled", "input": "hi", "tools": [flat], "tool_choice": "required"}
    error = await bad_request(oai.responses.create(**responses, text={"format": {"type": "json_object"}}))
    assert error.startswith("text.format and a tool_choice that forces a call")
    error = await bad_request(oai.responses.create(**responses, reasoning={"effort": "low"}))
    assert error.startswith("reasoning.effort may not turn thinking on")
    error = await bad_request(oai.chat.completions.create(model="tooled", messages=HI, tool_choice="required"))
    assert error.startswith("field 'tool_choice' forces a call, but 'tools' offers no function to call")
    assert models.runners.started == []


@pytest.fixture(scope="module")
def smollm2_openai(gemma_daemon: Daemon) -> Iterator[openai.OpenAI]:
    """The official client, and smollm2-tools: SmolLM2 135M under a template that shows it the tools (its
    49k vocabulary makes a JSON grammar quicker to sample than Gemma's 262k)."""
    status, made = gemma_daemon.request("POST", "/api/create", {"model": "smollm2-tools", "from": "smollm2:135m",
                                                                 "template": TOOL_TEMPLATE, "stream": False})
    assert status == 200, made
    with over_socket(gemma_daemon) as http:
        yield openai.OpenAI(base_url="http://localhost/v1", api_key="r1", http_client=http, max_retries=0)


def check_weather_arguments(arguments: str) -> None:
    """The arguments a forced call wrote match WEATHER."""
    parsed = json.loads(arguments)
    assert set(parsed) == {"city"} and isinstance(parsed["city"], str) and len(parsed["city"]) <= 12


@pytest.mark.parametrize("choice", ["required", "get_time"])
def test_a_model_calls_the_function_tool_choice_forces(smollm2_openai: openai.OpenAI, choice: str) -> None:
    """Asked for no tool at all, SmolLM2 calls one (required) or the one named, on both routes."""
    names = ("get_weather", "get_time") if choice == "required" else (choice,)
    chat_choice: Any = choice if choice == "required" else {"type": "function", "function": {"name": choice}}
    answer = smollm2_openai.chat.completions.create(
        model="smollm2-tools", messages=[{"role": "user", "content": "Write a poem."}], max_tokens=40, temperature=0,
        tools=[CHAT_WEATHER, CHAT_TIME], tool_choice=chat_choice)
    [call] = answer.choices[0].message.tool_calls
    assert answer.choices[0].finish_reason == "tool_calls" and call.function.name in names
    check_weather_arguments(call.function.arguments)
    responses_choice: Any = choice if choice == "required" else {"type": "function", "name": choice}
    response = smollm2_openai.responses.create(
        model="smollm2-tools", input="Write a poem.", max_output_tokens=40, temperature=0, tool_choice=responses_choice,
        tools=[{"type": "function", **t["function"]} for t in (CHAT_WEATHER, CHAT_TIME)])
    [item] = response.output
    assert item.type == "function_call" and item.name in names and response.status == "completed"
    check_weather_arguments(item.arguments)


# --- the agents' recorded requests, replayed ------------------------------------------------------

RECORDED = sorted((Path(__file__).parent / "agents").glob("*-*/*.json"))
# How long an answer may be, per route: the recorded bodies ask for up to 32000 tokens.
MAX_TOKENS = {"/v1/messages": "max_tokens", "/v1/chat/completions": "max_tokens", "/v1/responses": "max_output_tokens"}
AGENT_CONTEXT = 32768  # what r1 launch gives a model for an agent's 20-30K-token prompt


@pytest.fixture(scope="module")
def agent_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with agent-model: a tiny random model with a real (SmolLM2's) vocabulary, so prompts count
    as many tokens as on a real model, a template that renders tools, a 32K context, and answers that end at
    their first token (the replay checks the protocol, not what the model says)."""
    root = tmp_path_factory.mktemp("agent-daemon")
    with private_daemon(root) as daemon:
        daemon.cli("import", str(write_quiet_gguf(root / "quiet.gguf")), "--name", "quiet")
        status, made = daemon.request("POST", "/api/create", {"model": "agent-model", "from": "quiet", "stream": False,
                                                               "parameters": {"num_ctx": AGENT_CONTEXT}})
        assert status == 200, made
        yield daemon


def server_sent_events(text: str) -> list[tuple[str | None, Any]]:
    """(event name or None, data as JSON, or "[DONE]") for each event of a stream."""
    events = []
    for block in filter(None, text.split("\n\n")):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        data = fields["data"]
        events.append((fields.get("event"), data if data == "[DONE]" else json.loads(data)))
    return events


def check_messages_stream(events: list[tuple[str | None, Any]], body: dict[str, Any]) -> None:
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"], names
    assert all(name == data["type"] for name, data in events)
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] in ("end_turn", "max_tokens", "tool_use")
    if "context_management" in body:
        assert isinstance(delta["context_management"]["applied_edits"], list)
    started = [data["index"] for name, data in events if name == "content_block_start"]
    assert started == list(range(len(started))) and names.count("content_block_stop") == len(started)


def check_responses_stream(events: list[tuple[str | None, Any]], body: dict[str, Any]) -> None:
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[0][0] == "response.created" and events[-1][0] in ("response.completed", "response.incomplete")
    response = events[-1][1]["response"]
    assert response["object"] == "response" and response["output"] and response["usage"]["input_tokens"] > 0
    assert response["store"] == body.get("store", True)


def check_chat_stream(events: list[tuple[str | None, Any]], body: dict[str, Any]) -> None:
    assert events[-1] == (None, "[DONE]")
    chunks = [data for _, data in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] in ("stop", "length", "tool_calls")
    if (body.get("stream_options") or {}).get("include_usage"):
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] > 0


CHECKS = {"/v1/messages": check_messages_stream, "/v1/responses": check_responses_stream,
          "/v1/chat/completions": check_chat_stream}


@pytest.mark.skipif(not RECORDED, reason="no recorded requests in tests/agents/")
@pytest.mark.parametrize("recorded", RECORDED, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_a_recorded_agent_request_is_answered(agent_daemon: Daemon, recorded: Path) -> None:
    """Each request a real agent sent (tests/agents/record.py kept its body as sent) gets a 200 and a
    well-formed answer in its dialect's shape."""
    entry = json.loads(recorded.read_text())
    path, body = entry["path"], dict(entry["body"])
    body["model"] = "agent-model"
    body[MAX_TOKENS[path]] = min(body.get(MAX_TOKENS[path]) or 16, 16)
    status, answer = agent_daemon.request(entry["method"], path, body, timeout=300)
    assert status == 200, answer
    if body.get("stream"):
        CHECKS[path](server_sent_events(answer), body)
    else:
        assert answer.get("type") == "message" or answer.get("object") in ("response", "chat.completion"), answer
