"""The fake upstream behaves as its docstring says, judged by the official openai client (and httpx where
the client hides the wire), so remote-engine tests can trust what it sends."""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.fakeupstream import (ANSWER, HUGE_LINE, INLINE, MAX_MODEL_LEN, TEXT, THINKING, TOOL_CALL,
                                        FakeUpstream, embedding, words)
from tests.support.polling import wait_until

pytestmark = pytest.mark.unit  # the fast lane (docs/development.md)

HELLO = "Hello there."
USER = [{"role": "user", "content": "Say hello to me"}]  # 4 words


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        server.add_model("plain", text=HELLO)
        yield server


@pytest.fixture
def client(upstream: FakeUpstream) -> openai.OpenAI:
    upstream.reset_counters()
    # No retries: a 429 or 500 must reach the test, not be retried after Retry-After's 7 s.
    return openai.OpenAI(base_url=upstream.url + "/v1", api_key="sk-test", max_retries=0, timeout=5)


def chat_stream(client: openai.OpenAI, model: str, **extra: Any) -> list[Any]:
    return list(client.chat.completions.create(model=model, messages=USER, stream=True, **extra))


def test_models_and_health(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    models = {m.id: m for m in client.models.list()}
    assert {"plain", "fault-401", "cut-after-3", "no-first-byte", "reasoning-content", "reasoning-field",
            "inline-think", "tool-call"} <= set(models)
    assert "fault-404" not in models
    assert models["plain"].owned_by == "fake" and models["plain"].model_extra["max_model_len"] == MAX_MODEL_LEN
    assert httpx.get(upstream.url + "/health").status_code == 200


def test_chat_not_streamed_and_the_request_log(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    reply = client.chat.completions.create(model="plain", messages=[{"role": "system", "content": "Be kind."}, *USER],
                                           temperature=0)
    assert reply.choices[0].message.content == HELLO and reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (6, 2)
    [seen] = upstream.requests
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["Authorization"] == "Bearer sk-test"
    assert seen.body["model"] == "plain" and seen.body["temperature"] == 0 and seen.body["messages"][1] == USER[0]


def test_chat_streamed_word_by_word_with_usage_last(client: openai.OpenAI) -> None:
    chunks = chat_stream(client, "plain", stream_options={"include_usage": True})
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:3]] == words(HELLO) == ["Hello", " there."]
    assert chunks[3].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 2)
    assert all(c.usage is None for c in chunks[:-1])
    assert all(c.usage is None for c in chat_stream(client, "plain"))  # no usage unless asked


def test_stream_ends_with_done_on_the_wire(upstream: FakeUpstream) -> None:
    answer = httpx.post(upstream.url + "/v1/chat/completions", json={"model": "plain", "messages": USER, "stream": True})
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    events = answer.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: {") for e in events[:-2])


def test_max_tokens_stops_with_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="plain", messages=USER, max_tokens=1)
    assert reply.choices[0].message.content == "Hello" and reply.choices[0].finish_reason == "length"


def test_completions(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="plain", prompt="Once upon a time")
    assert reply.choices[0].text == HELLO and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 2)
    chunks = list(client.completions.create(model="plain", prompt="Once", stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == HELLO
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 2
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tool-call", prompt="Weather?")


def test_embeddings_float_and_base64(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    reply = client.embeddings.create(model="plain", input=["one two", "three"])  # the client asks for base64
    assert [d.embedding for d in reply.data] == [pytest.approx(embedding("one two")), pytest.approx(embedding("three"))]
    assert reply.usage.prompt_tokens == 3 and upstream.requests[-1].body["encoding_format"] == "base64"
    plain = httpx.post(upstream.url + "/v1/embeddings", json={"model": "plain", "input": "one two"}).json()
    assert plain["data"][0]["embedding"] == embedding("one two") and len(embedding("x")) == 8
    assert embedding("one two") != embedding("three")
    packed = httpx.post(upstream.url + "/v1/embeddings",
                        json={"model": "plain", "input": "x", "encoding_format": "base64"}).json()
    assert struct.unpack("<8f", base64.b64decode(packed["data"][0]["embedding"])) == pytest.approx(embedding("x"))


@pytest.mark.parametrize("model, error, status, code", [
    ("fault-401", openai.AuthenticationError, 401, "invalid_api_key"),
    ("fault-403", openai.PermissionDeniedError, 403, "permission_denied"),
    ("fault-404", openai.NotFoundError, 404, "model_not_found"),
    ("no-such-model", openai.NotFoundError, 404, "model_not_found"),
    ("fault-429", openai.RateLimitError, 429, "rate_limit_exceeded"),
    ("fault-500", openai.InternalServerError, 500, "server_error"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_faults(client: openai.OpenAI, model: str, error: type[openai.APIStatusError], status: int, code: str,
                stream: bool) -> None:
    with pytest.raises(error) as raised:
        client.chat.completions.create(model=model, messages=USER, stream=stream)
    assert raised.value.status_code == status and raised.value.code == code
    assert raised.value.body["message"]  # the client hands over the "error" object
    if status == 401:
        assert raised.value.body["message"] == "Invalid API key" and raised.value.type == "invalid_request_error"
    assert (raised.value.response.headers.get("Retry-After") == "7") == (status == 429)
    with pytest.raises(error):
        client.embeddings.create(model=model, input="x")


def test_api_key_required_when_set() -> None:
    with FakeUpstream(api_key="right") as server:
        server.add_model("plain", text=HELLO)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=server.url + "/v1", api_key="right", max_retries=0)
        assert good.chat.completions.create(model="plain", messages=USER).choices[0].message.content == HELLO
        assert [r.headers.get("Authorization") for r in server.requests] == ["Bearer wrong", "Bearer right"]


def test_cut_stream_raises_after_three_chunks(client: openai.OpenAI) -> None:
    got = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="cut-after-3", messages=USER, stream=True):
            got.append(chunk.choices[0].delta.content)
    assert "".join(c for c in got if c) == "".join(words(TEXT)[:3])
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="cut-after-3", messages=USER)


def test_no_first_byte_times_out_and_lets_the_server_stop() -> None:
    server = FakeUpstream().start()
    quick = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        quick.chat.completions.create(model="no-first-byte", messages=USER, stream=True)
    failures: list[Exception] = []

    def wait() -> None:
        try:
            httpx.post(server.url + "/v1/chat/completions", json={"model": "no-first-byte"}, timeout=10)
        except httpx.HTTPError as e:
            failures.append(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_until(lambda: len(server.requests) == 2)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    waiter.join(timeout=5)
    assert not waiter.is_alive() and len(failures) == 1  # stopping ended the request, unanswered


@pytest.mark.parametrize("model, field", [("reasoning-content", "reasoning_content"), ("reasoning-field", "reasoning")])
def test_reasoning_fields(client: openai.OpenAI, model: str, field: str) -> None:
    deltas = [c.choices[0].delta.model_dump() for c in chat_stream(client, model) if c.choices]
    assert "".join(d.get(field) or "" for d in deltas) == THINKING
    assert "".join(d.get("content") or "" for d in deltas) == ANSWER
    first_answer = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert not any(d.get(field) for d in deltas[first_answer:])  # thinking comes first
    message = client.chat.completions.create(model=model, messages=USER).choices[0].message
    assert message.content == ANSWER and message.model_extra[field] == THINKING


def test_inline_think_split_at_every_position(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    assert [c.choices[0].delta.content for c in chat_stream(client, "inline-think")][1:-1] == words(INLINE)
    with httpx.Client(base_url=upstream.url) as wire:  # one connection for the 67 requests: fast
        for at in range(len(INLINE) + 1):
            events = wire.post("/v1/chat/completions",
                               json={"model": f"inline-think-{at}", "messages": USER, "stream": True}).text.split("\n\n")
            pieces = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[:-2]]
            assert [p for p in pieces if p] == [p for p in (INLINE[:at], INLINE[at:]) if p]
    message = client.chat.completions.create(model="inline-think-5", messages=USER).choices[0].message
    assert message.content == INLINE
    assert client.completions.create(model="reasoning-content", prompt="2+2").choices[0].text == INLINE


def test_tool_call(client: openai.OpenAI) -> None:
    chunks = chat_stream(client, "tool-call", stream_options={"include_usage": True})
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert calls[0][0].id == "call_1" and calls[0][0].function.name == "get_weather"
    arguments = [call[0].function.arguments for call in calls]
    assert len([a for a in arguments if a]) >= 3  # split over several chunks
    assert json.loads("".join(arguments)) == {"city": "Paris"}
    assert chunks[-2].choices[0].finish_reason == "tool_calls" and chunks[-1].usage.completion_tokens == len(calls) - 1
    choice = client.chat.completions.create(model="tool-call", messages=USER).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls[0].model_dump() == TOOL_CALL


def test_no_usage_streams_none_whatever_it_is_asked(client: openai.OpenAI) -> None:
    chunks = chat_stream(client, "no-usage", stream_options={"include_usage": True})
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert all(c.usage is None for c in chunks)
    assert client.chat.completions.create(model="no-usage", messages=USER).usage.completion_tokens == len(words(TEXT))


def test_hostile_models_echo_what_they_got_and_send_what_no_client_reads(upstream: FakeUpstream) -> None:
    key = {"Authorization": "Bearer sk-Echo-Me", "X-Custom": "Custom-Value"}
    with httpx.Client(base_url=upstream.url, headers=key) as wire:
        def chat(model: str) -> httpx.Response:
            return wire.post("/v1/chat/completions", json={"model": model, "messages": USER, "stream": True})

        for model, status, echoed in (("echo-upper", 401, "BEARER SK-ECHO-ME"),
                                      ("echo-lower", 500, "x-custom: custom-value"),
                                      ("echo-headers", 400, "X-Custom: Custom-Value")):
            answer = chat(model)
            assert answer.status_code == status and echoed in answer.json()["error"]["message"], model
        midstream = chat("echo-midstream").text.split("\n\n")
        assert TEXT in midstream[0] and "cUSTOM-vALUE" in json.loads(midstream[1][6:])["error"]["message"]
        for model in ("garbage-first", "garbage-late", "huge-first", "huge-late"):
            lines = chat(model).text.split("\n\n")
            assert (TEXT in lines[0]) == model.endswith("-late") and lines[-2:] == ["data: [DONE]", ""]
            last = lines[-3]
            if model.startswith("garbage-"):
                with pytest.raises(ValueError):
                    json.loads(last[6:])
            else:
                assert len(last) > HUGE_LINE and "\n" not in last
