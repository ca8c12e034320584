"""OpenAI's API (/v1), judged by the official `openai` client: end to end over the session daemon's
Unix socket with real models, and its checks and framing in-process."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.support.daemons import HF_NAME, Daemon, runner_pids
from tests.support.inprocess import InProcess
GREEDY: dict[str, Any] = {"temperature": 0}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}

@pytest.fixture(scope="module")
def client(openai_client: openai.OpenAI) -> openai.OpenAI:
    return openai_client


def ask(client: openai.OpenAI, content: Any, model: str = "gemma-chat", **kw: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                          **{**GREEDY, **kw})


# --- models -----------------------------------------------------------------------------------


def test_models_are_listed_and_retrieved_by_any_name(client: openai.OpenAI) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert set(ids) >= {"gemma:latest", "gemma-chat:latest", "gemma-tools:latest", "thinker:latest", HF_NAME}
    now = time.time()
    for model in models.data:
        assert model.object == "model" and model.owned_by == "r1"
        assert now - 3600 < model.created <= now + 1
    hf = client.models.retrieve(HF_NAME)  # '/' and ':' in the id: the client percent-encodes them
    assert hf.id == HF_NAME and hf.created == next(m.created for m in models.data if m.id == HF_NAME)
    assert client.models.retrieve("gemma").id == "gemma:latest"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "model_not_found" and "no-such-model" in caught.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("bad!name")  # not even a valid name


# --- chat completions -------------------------------------------------------------------------


def test_chat_completion_answers_with_usage(client: openai.OpenAI) -> None:
    answer = ask(client, "What is the capital of France?", max_tokens=24)
    assert answer.id.startswith("chatcmpl-") and answer.object == "chat.completion"
    assert answer.model == "gemma-chat" and answer.system_fingerprint == "r1"
    assert abs(answer.created - time.time()) < 60
    [choice] = answer.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.message.content.strip() and "<end_of_turn>" not in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = answer.usage
    assert usage.prompt_tokens > 5 and 0 < usage.completion_tokens <= 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # The template's tokens are counted: the raw question alone is fewer tokens.
    raw = client.completions.create(model="gemma", prompt="What is the capital of France?", max_tokens=1)
    assert usage.prompt_tokens > raw.usage.prompt_tokens


def test_streamed_chat_assembles_to_the_whole_answer(client: openai.OpenAI) -> None:
    kw = {"max_tokens": 12}
    ask(client, "Name three colours.", **kw)  # warm the prompt cache, as both compared runs then reuse it
    whole = ask(client, "Name three colours.", **kw)
    chunks = list(ask(client, "Name three colours.", stream=True, stream_options={"include_usage": True}, **kw))
    *answer, usage_chunk = chunks
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].id.startswith("chatcmpl-") and chunks[0].id != whole.id
    assert answer[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in answer[1:])
    assert all(c.choices[0].finish_reason is None for c in answer[:-1])
    assert answer[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    text = "".join(c.choices[0].delta.content or "" for c in answer)
    assert text == whole.choices[0].message.content and text.strip()
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.model_dump() == whole.usage.model_dump()
    assert all(c.usage is None for c in answer)
    plain = list(ask(client, "Name three colours.", stream=True, **kw))  # no include_usage: no usage chunk
    assert plain[-1].choices[0].finish_reason is not None and all(c.usage is None for c in plain)


def test_content_parts_are_joined_and_sampling_fields_apply(client: openai.OpenAI) -> None:
    joined = ask(client, "Say hello.\nThen say goodbye.", max_tokens=12)
    parts = ask(client, [{"type": "text", "text": "Say hello."}, {"type": "text", "text": "Then say goodbye."}],
                max_tokens=12)
    assert parts.usage.prompt_tokens == joined.usage.prompt_tokens
    assert parts.choices[0].message.content == joined.choices[0].message.content
    short = ask(client, "Tell me a long story about a dragon.", max_completion_tokens=3)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"
    legacy = ask(client, "Tell me a long story about a dragon.", max_tokens=4)
    assert legacy.usage.completion_tokens == 4
    # Sampled (temperature 1), the same seed gives the same words. The first request may take a copy of another
    # slot's prefix and evaluate the rest in other KV cells, which changes the last bits of the logits: enough to
    # move a draw at temperature 1. From the second on the prompt is in its own slot, evaluated the same way.
    seeded = [ask(client, "Write a word.", temperature=1.0, top_p=0.95, seed=7, max_tokens=10,
                  frequency_penalty=0.5, presence_penalty=0.5).choices[0].message.content for _ in range(3)]
    assert seeded[1] == seeded[2]
    # A stop string ends the answer before it, with finish_reason stop.
    counted = client.completions.create(model="gemma", prompt="1, 2, 3, 4, 5,", max_tokens=20, stop=", 9", **GREEDY)
    assert counted.choices[0].finish_reason == "stop" and "9" not in counted.choices[0].text
    assert counted.choices[0].text.startswith(" 6, 7, 8")


def test_unknown_fields_are_ignored_and_ollama_options_are_read(client: openai.OpenAI) -> None:
    answer = ask(client, "Hi", max_tokens=2, user="someone", metadata={"a": "b"},
                 extra_body={"options": {"num_predict": 50, "top_k": 1}, "some_future_field": {"x": 1}})
    assert answer.usage.completion_tokens <= 2  # OpenAI's max_tokens wins over options.num_predict
    longer = ask(client, "Count from one to twenty.", extra_body={"options": {"num_predict": 5}})
    assert longer.usage.completion_tokens == 5


def test_response_format_json_schema_and_json_object(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    # SmolLM2: a grammar is checked against every token of the vocabulary at each step (49k here, 262k in Gemma).
    answer = ask(client, "Describe a cat as JSON.", model="smollm2:135m", max_tokens=80,
                 response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": schema}})
    assert answer.choices[0].finish_reason == "stop"
    cat = json.loads(answer.choices[0].message.content)
    assert set(cat) == {"name", "age"} and isinstance(cat["age"], int) and isinstance(cat["name"], str)
    completion = client.completions.create(model="smollm2:135m", prompt="A JSON object describing a dog:", max_tokens=60,
                                           extra_body={"response_format": {"type": "json_object"}}, **GREEDY)
    assert completion.choices[0].text.lstrip().startswith("{")
    if completion.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(completion.choices[0].text), dict)
    text = ask(client, "Say hi.", model="smollm2:135m", max_tokens=5, response_format={"type": "text"})
    assert text.choices[0].message.content is not None


def test_a_tool_call_comes_back_as_tool_calls(client: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    answer = client.chat.completions.create(model="gemma-tools", messages=question, tools=[WEATHER], max_tokens=40, **GREEDY)
    [choice] = answer.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    # Streamed: one delta holds the whole call, with its index; then finish_reason tool_calls.
    chunks = list(client.chat.completions.create(model="gemma-tools", messages=question, tools=[WEATHER],
                                                 max_tokens=40, stream=True, **GREEDY))
    with_calls = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(with_calls) == 1
    [streamed] = with_calls[0].choices[0].delta.tool_calls
    assert streamed.index == 0 and streamed.id.startswith("call_") and streamed.type == "function"
    assert streamed.function.name == "get_weather" and json.loads(streamed.function.arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ""
    # tool_choice "none": no tools reach the template, so the model answers in words.
    words = client.chat.completions.create(model="gemma-tools", messages=question, tools=[WEATHER], tool_choice="none",
                                           max_tokens=10, **GREEDY)
    assert words.choices[0].message.tool_calls is None and words.choices[0].finish_reason in ("stop", "length")


def test_a_tool_result_goes_back_to_the_template(client: openai.OpenAI) -> None:
    def conversation(result: str) -> list[dict[str, Any]]:
        return [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": result},
        ]

    short = client.chat.completions.create(model="gemma-tools", messages=conversation("22 C"), tools=[WEATHER],
                                           max_tokens=20, **GREEDY)
    # The template raises unless arguments became an object and the result got its tool's name.
    assert short.choices[0].finish_reason in ("stop", "length")
    assert short.choices[0].message.tool_calls is None  # the template asks for words after a tool result
    longer = client.chat.completions.create(model="gemma-tools", messages=conversation("22 C, sunny, light wind from the west"),
                                            tools=[WEATHER], max_tokens=1, **GREEDY)
    assert longer.usage.prompt_tokens > short.usage.prompt_tokens  # the result's words are in the prompt
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemma-tools", messages=[
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}]}])
    assert "arguments" in caught.value.message


def test_reasoning_model_thinking_is_reasoning_content(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"model": "thinker", "messages": [{"role": "user", "content": "2+2?"}], "max_tokens": 8, **GREEDY}
    answer = client.chat.completions.create(**kw)
    message = answer.choices[0].message
    # A random-weight model never closes the block the template opened: all it wrote is reasoning.
    assert message.content == ""
    assert answer.usage.completion_tokens == 8 and answer.choices[0].finish_reason == "length"
    reasoning = message.model_extra["reasoning_content"]
    assert isinstance(reasoning, str) and reasoning
    chunks = list(client.chat.completions.create(**kw, stream=True))
    deltas = [c.choices[0].delta for c in chunks]
    assert "".join(d.model_extra.get("reasoning_content") or "" for d in deltas) == reasoning
    assert all(not d.content for d in deltas)
    hidden = client.chat.completions.create(**kw, reasoning_effort="none")
    assert hidden.choices[0].message.content == ""
    assert "reasoning_content" not in (hidden.choices[0].message.model_extra or {})


# --- completions ------------------------------------------------------------------------------


def test_completions_take_the_prompt_raw(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"model": "gemma", "prompt": "The capital of France is", "max_tokens": 12, **GREEDY}
    client.completions.create(**kw)  # warm the prompt cache
    whole = client.completions.create(**kw)
    assert whole.id.startswith("cmpl-") and whole.object == "text_completion" and whole.model == "gemma"
    [choice] = whole.choices
    assert "France" in choice.text and choice.finish_reason == "length"  # a real model continues sensibly
    assert whole.usage.completion_tokens == 12 and 5 <= whole.usage.prompt_tokens <= 8
    chunks = list(client.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    *pieces, usage_chunk = chunks
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in pieces) == choice.text
    assert pieces[-1].choices[0].finish_reason == "length"
    assert usage_chunk.choices == [] and usage_chunk.usage.model_dump() == whole.usage.model_dump()
    listed = client.completions.create(**{**kw, "prompt": ["The capital of France is"]})
    assert listed.choices[0].text == choice.text
    default = client.completions.create(model="gemma", prompt="Once upon a time", **GREEDY)
    assert default.usage.completion_tokens == 16  # OpenAI's default max_tokens


# --- errors -----------------------------------------------------------------------------------


@pytest.fixture
async def aclient(api: InProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official client against the app in-process (its test server listens on loopback); closed
    while its event loop runs, or its connections' finalizers fail in a later test's loop."""
    await api.add_model("chat")
    await api.add_model("base", chat_template=None)
    async with openai.AsyncOpenAI(base_url=str(api.client.make_url("/v1")), api_key="r1", max_retries=0) as client:
        yield client


async def test_errors_come_in_openais_shape(aclient: openai.AsyncOpenAI, api: InProcess) -> None:
    def chat(content: Any = "hi", **kw: Any) -> Any:
        return aclient.chat.completions.create(model="chat", messages=[{"role": "user", "content": content}], **kw)

    with pytest.raises(openai.NotFoundError) as caught:
        await aclient.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):  # a stream fails before its first byte, so it gets its status too
        await aclient.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.NotFoundError):
        await aclient.completions.create(model="nope", prompt="hi")
    with pytest.raises(openai.NotFoundError):
        await aclient.embeddings.create(model="nope", input="hi")
    bad_requests = [
        (chat(n=2), "'n'"),
        (chat(temperature="hot"), "temperature"),
        (chat([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]), "not an image"),
        (chat(response_format={"type": "yaml"}), "response_format"),
        (chat(stop=[1, 2]), "stop"),
        (chat(top_logprobs=3), "top_logprobs"),
        (chat(tool_choice={"type": "function", "function": {"name": "nope"}}, tools=[WEATHER]), "tool_choice"),
        (chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]), "parameters"),
        (aclient.chat.completions.create(model="chat", messages=[]), "messages"),
        (aclient.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}]), "chat template"),
        (aclient.completions.create(model="base", prompt=[1, 2, 3]), "prompt"),
        (aclient.completions.create(model="base", prompt="hi", echo=True), "echo"),
        (aclient.completions.create(model="base", prompt="hi", suffix="end"), "suffix"),
        (aclient.completions.create(model="base", prompt=""), "prompt"),
        (aclient.embeddings.create(model="base", input=[[1, 2, 3]]), "token"),
    ]
    for call, word in bad_requests:
        with pytest.raises(openai.BadRequestError) as caught:
            await call
        assert caught.value.body["type"] == "invalid_request_error", caught.value.body
        assert word in caught.value.body["message"], caught.value.body
    assert api.runners.started == []  # no bad request loaded a model
    response = await api.client.post("/v1/chat/completions", data=b"{not json")
    body = await response.json()
    assert response.status == 400
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error" and "JSON" in body["error"]["message"]
    response = await api.client.get("/v1/nothing-here")
    assert response.status == 404 and (await response.json())["error"]["type"] == "not_found_error"


async def test_fields_become_the_cores_options(aclient: openai.AsyncOpenAI, api: InProcess) -> None:
    await aclient.chat.completions.create(
        model="chat", messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        temperature=0.2, top_p=0.5, seed=3, stop=["x"], max_completion_tokens=2, frequency_penalty=0.1,
        presence_penalty=0.3, response_format={"type": "json_object"}, extra_body={"options": {"top_k": 7}})
    sent = api.runners.requests[-1]
    assert sent["sampling"] == {"temperature": 0.2, "top_p": 0.5, "seed": 3, "stop": ["x"], "num_predict": 2,
                                "frequency_penalty": 0.1, "presence_penalty": 0.3, "top_k": 7}
    assert sent["format"] == "json" and [m["role"] for m in sent["messages"]] == ["system", "user"]
    completion = await aclient.completions.create(model="base", prompt="Once")
    assert api.runners.requests[-1]["sampling"]["num_predict"] == 16 and api.runners.requests[-1]["raw"] is True
    assert completion.choices[0].text == "Hello, world!" and completion.usage.completion_tokens == 4


async def test_an_error_after_the_first_token_ends_the_stream_in_band(api: InProcess) -> None:
    from r1.daemon.scheduler.runner_client import RunnerDied

    await api.add_model("chat")
    api.runners.script[2:] = [RunnerDied("the model runner for chat stopped: was killed by SIGKILL", "was killed", -9)]
    response = await api.client.post("/v1/chat/completions", json={
        "model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert response.status == 200  # the headers went with the first token
    events = (await response.text()).split("\n\n")
    assert [json.loads(e.removeprefix("data: "))["choices"][0]["delta"].get("content") for e in events[:2]] == ["Hello", ","]
    last = json.loads(events[2].removeprefix("data: "))
    assert last["error"]["type"] == "server_error" and "SIGKILL" in last["error"]["message"]
    assert events[3:] == [""]  # no [DONE] after an error


async def test_streams_are_server_sent_events_ending_in_done(api: InProcess) -> None:
    await api.add_model("chat")
    response = await api.client.post("/v1/chat/completions", json={
        "model": "chat", "messages": [{"role": "user", "content": "Hi"}], "stream": True, "max_tokens": 3,
        "stream_options": {"include_usage": True}})
    assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
    events = (await response.text()).split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: ") and "\n" not in e for e in events[:-1])
    parsed = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert [p["choices"][0]["delta"].get("content") for p in parsed[:3]] == ["Hello", ",", " world"]
    assert parsed[-2]["choices"][0]["finish_reason"] == "length"
    assert parsed[-1]["choices"] == [] and parsed[-1]["usage"]["completion_tokens"] == 3
    assert {p["id"] for p in parsed} == {parsed[0]["id"]} and all(p["model"] == "chat" for p in parsed)


def test_a_client_that_leaves_a_stream_cancels_its_generation(client: openai.OpenAI, gemma_daemon: Daemon) -> None:
    stream = client.completions.create(model="gemma", prompt="Count to a thousand: 1, 2,", max_tokens=3000,
                                       stream=True, **GREEDY)
    pieces = [next(iter(stream)) for _ in range(3)]
    assert all(p.choices[0].finish_reason is None for p in pieces)
    stream.close()
    started = time.monotonic()
    quick = client.completions.create(model="gemma", prompt="Hello", max_tokens=4, **GREEDY)
    assert quick.usage.completion_tokens == 4
    assert time.monotonic() - started < 10  # 3000 tokens would take half a minute
    deadline = time.monotonic() + 5
    while "cancelled" not in gemma_daemon.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "cancelled: its client went away" in gemma_daemon.log()


def test_an_error_mid_stream_arrives_in_band(client: openai.OpenAI, gemma_daemon: Daemon) -> None:
    stream = client.chat.completions.create(model="gemma-chat", messages=[{"role": "user", "content": "Tell me a story."}],
                                            max_tokens=3000, stream=True, **GREEDY)
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.role == "assistant"
    pids = runner_pids(gemma_daemon)
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(openai.APIError) as caught:
        for _ in chunks:
            pass
    assert "runner" in caught.value.message and "SIGKILL" in caught.value.message
    assert caught.value.body["type"] == "server_error"
    after = ask(client, "Hi", max_tokens=3)  # the next request gets a fresh runner
    assert after.usage.completion_tokens >= 1
