"""Generation end to end (the session daemon: Gemma 3 270M and tiny GGUFs on llama-cpp-python), and the
generation routes' checks in-process."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any


from tests.support.answers import prompt_tokens
from tests.support.daemons import Daemon, runner_pids
from tests.support.inprocess import InProcess
from tests.support.tinymodels import GEMMA_TEMPLATE
from tests.support.unixhttp import Stream

GREEDY = {"temperature": 0}
STATS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")


def stream(daemon: Daemon, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    s = Stream(daemon.socket, path, body)
    try:
        assert s.status == 200, s.response.read()
        return list(s)
    finally:
        s.close()


def test_raw_generate_is_greedy_and_reports_its_stats(gemma_daemon: Daemon) -> None:
    body = {"model": "gemma", "prompt": "The capital of France is", "raw": True, "stream": False,
            "options": {**GREEDY, "num_predict": 12}}
    status, first = gemma_daemon.request("POST", "/api/generate", body)
    assert status == 200, first
    assert first["done"] is True and first["done_reason"] == "length"
    assert "France" in first["response"]  # a real model continues the prompt sensibly
    assert first["eval_count"] == 12 and prompt_tokens(first) >= 5
    for field in STATS:
        assert isinstance(first[field], int) and first[field] >= 0, field
    assert first["total_duration"] >= first["prompt_eval_duration"] + first["eval_duration"]
    _, second = gemma_daemon.request("POST", "/api/generate", body)
    assert second["response"] == first["response"]  # temperature 0: the same tokens
    assert second["load_duration"] < 50_000_000  # hot the second time: no load


def test_streamed_generate_matches_the_whole_answer(gemma_daemon: Daemon) -> None:
    body = {"model": "gemma", "prompt": "Once upon a time", "raw": True, "options": {**GREEDY, "num_predict": 20}}
    # Both timed runs reuse the cached prompt: a prompt evaluated in one batch and one whose last
    # token is evaluated alone differ in the last bits, enough to flip a greedy choice now and then.
    gemma_daemon.request("POST", "/api/generate", {**body, "stream": False})
    chunks = stream(gemma_daemon, "/api/generate", body)
    assert all(c["done"] is False for c in chunks[:-1]) and chunks[-1]["done"] is True
    assert chunks[-1]["eval_count"] == 20
    _, whole = gemma_daemon.request("POST", "/api/generate", {**body, "stream": False})
    assert "".join(c["response"] for c in chunks) == whole["response"]
    assert all(c["model"] == "gemma" and c["created_at"].endswith("Z") for c in chunks)


def test_a_model_made_with_r1_create_shares_its_base_models_runner(gemma_daemon: Daemon) -> None:
    options = {**GREEDY, "num_predict": 1}
    status, _ = gemma_daemon.request("POST", "/api/generate", {"model": "gemma", "prompt": "Hi", "raw": True,
                                                               "stream": False, "options": options})
    assert status == 200
    runners = set(runner_pids(gemma_daemon))
    status, answer = gemma_daemon.request("POST", "/api/chat", {
        "model": "gemma-chat", "messages": [{"role": "user", "content": "Hi"}], "stream": False, "options": options})
    assert status == 200 and answer["load_duration"] < 50_000_000  # nothing loaded: the weights already are
    assert set(runner_pids(gemma_daemon)) == runners


def test_chat_through_a_created_template_stops_at_end_of_turn(gemma_daemon: Daemon) -> None:
    status, show = gemma_daemon.request("POST", "/api/show", {"model": "gemma-chat"})
    assert status == 200
    assert show["template"] == GEMMA_TEMPLATE
    assert 'stop                           "<end_of_turn>"' in show["parameters"]
    status, answer = gemma_daemon.request("POST", "/api/chat", {
        "model": "gemma-chat", "stream": False, "options": GREEDY,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    })
    assert status == 200, answer
    assert answer["message"]["role"] == "assistant"
    assert answer["message"]["content"].strip()
    assert "<end_of_turn>" not in answer["message"]["content"]
    assert answer["eval_count"] <= 24  # the model's PARAMETER num_predict


def test_json_format_and_schema_constrain_the_output(gemma_daemon: Daemon) -> None:
    # SmolLM2: a grammar is checked against every token of the vocabulary at each step (49k here, 262k in Gemma).
    status, answer = gemma_daemon.request("POST", "/api/generate", {
        "model": "smollm2:135m", "prompt": "A JSON object describing a cat:", "raw": True, "format": "json",
        "stream": False, "options": {**GREEDY, "num_predict": 30},
    })
    assert status == 200, answer
    assert answer["response"].lstrip().startswith("{")
    if answer["done_reason"] == "stop":
        assert isinstance(json.loads(answer["response"]), dict)
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    status, answer = gemma_daemon.request("POST", "/api/generate", {
        "model": "smollm2:135m", "prompt": "A cat as JSON:", "raw": True, "format": schema, "stream": False,
        "options": {**GREEDY, "num_predict": 80},
    })
    assert status == 200, answer
    assert answer["done_reason"] == "stop"
    parsed = json.loads(answer["response"])
    assert set(parsed) == {"name", "age"} and isinstance(parsed["age"], int)


def test_prompt_opened_think_block_is_returned_as_thinking(gemma_daemon: Daemon) -> None:
    body = {"model": "thinker", "messages": [{"role": "user", "content": "2+2?"}], "stream": False,
            "options": {"num_predict": 8, "temperature": 0}}
    status, answer = gemma_daemon.request("POST", "/api/chat", body)
    assert status == 200, answer
    # A random-weight model never closes the block: everything it wrote is reasoning.
    assert answer["message"]["content"] == ""
    assert answer["message"]["thinking"] and answer["eval_count"] == 8
    assert answer["thinking_unfinished"] is True and answer["done_reason"] == "length"
    status, hidden = gemma_daemon.request("POST", "/api/chat", {**body, "think": False})
    assert status == 200 and "thinking" not in hidden["message"] and hidden["message"]["content"] == ""
    status, show = gemma_daemon.request("POST", "/api/show", {"model": "thinker"})
    assert "thinking" in show["capabilities"]


async def test_bad_requests_name_the_problem(api: InProcess) -> None:
    await api.add_model("tiny")
    cases = [
        ({"model": "nope", "prompt": "hi"}, 404, "not found"),
        ({"model": "tiny", "prompt": "hi", "options": {"temperature": "hot"}}, 400, "temperature"),
        ({"model": "tiny", "prompt": "hi", "format": "xml"}, 400, "format"),
        ({"model": "tiny", "prompt": "hi", "keep_alive": "soon"}, 400, "keep_alive"),
        ({"model": "tiny", "messages": "hi"}, 400, "messages"),
        ({"prompt": "hi"}, 400, "model"),
    ]
    for body, code, word in cases:
        path = "/api/chat" if "messages" in body else "/api/generate"
        response = await api.client.post(path, json=body)
        answer = await response.json()
        assert response.status == code, (body, answer)
        assert word in answer["error"], answer
    response = await api.client.post("/api/generate", data=b"{not json")
    assert response.status == 400 and "JSON" in (await response.json())["error"]
    assert api.runners.started == []  # nothing was loaded for a bad request


async def test_chat_without_a_template_says_how_to_get_one(api: InProcess) -> None:
    await api.add_model("base", chat_template=None)
    response = await api.client.post("/api/chat", json={"model": "base", "messages": [{"role": "user", "content": "hi"}]})
    body = await response.json()
    assert response.status == 400
    assert "no chat template" in body["error"] and "r1 create" in body["error"]


async def test_an_empty_prompt_loads_the_model(api: InProcess) -> None:
    await api.add_model("tiny")
    response = await api.client.post("/api/generate", json={"model": "tiny"})
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    assert response.status == 200 and len(lines) == 1
    assert lines[0]["done"] is True and lines[0]["done_reason"] == "load" and lines[0]["response"] == ""
    response = await api.client.post("/api/chat", json={"model": "tiny", "messages": [], "stream": False})
    assert response.status == 200 and (await response.json())["done_reason"] == "load"
    assert len(api.runners.started) == 1 and api.runners.requests == []  # loaded once, asked nothing


async def test_ollama_streams_are_ndjson_and_whole_answers_join_them(api: InProcess) -> None:
    await api.add_model("tiny")
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    response = await api.client.post("/api/chat", json=body)
    assert response.headers["Content-Type"] == "application/x-ndjson"
    chunks = [json.loads(line) for line in (await response.text()).splitlines()]
    assert [c["message"]["content"] for c in chunks] == ["Hello", ",", " world", "!", ""]
    assert [c["done"] for c in chunks] == [False] * 4 + [True] and chunks[-1]["eval_count"] == 4
    response = await api.client.post("/api/chat", json={**body, "stream": False})
    whole = await response.json()
    assert whole["message"] == {"role": "assistant", "content": "Hello, world!"} and whole["done_reason"] == "stop"
    response = await api.client.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False,
                                                            "options": {"num_predict": 2}})
    assert (await response.json())["response"] == "Hello," and api.runners.requests[-1]["sampling"]["num_predict"] == 2


def test_a_client_that_leaves_cancels_its_generation(gemma_daemon: Daemon) -> None:
    long = {"model": "gemma", "prompt": "Count to a thousand: 1, 2,", "raw": True, "options": {**GREEDY, "num_predict": 3000}}
    s = Stream(gemma_daemon.socket, "/api/generate", long)
    pieces = [next(iter(s)) for _ in range(3)]
    assert all(p["done"] is False for p in pieces)
    s.close()
    started = time.monotonic()
    status, answer = gemma_daemon.request("POST", "/api/generate",
                                    {"model": "gemma", "prompt": "Hello", "raw": True, "stream": False,
                                     "options": {**GREEDY, "num_predict": 4}})
    assert status == 200 and answer["eval_count"] == 4
    assert time.monotonic() - started < 10  # 3000 tokens would take half a minute
    deadline = time.monotonic() + 5
    while "cancelled" not in gemma_daemon.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "cancelled" in gemma_daemon.log()


def test_a_runner_killed_mid_request_is_an_error_and_the_next_request_recovers(gemma_daemon: Daemon) -> None:
    s = Stream(gemma_daemon.socket, "/api/generate", {"model": "gemma", "prompt": "Tell me a story.", "raw": True,
                                                 "options": {**GREEDY, "num_predict": 3000}})
    lines = iter(s)
    assert next(lines)["done"] is False
    pids = runner_pids(gemma_daemon)
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    rest = list(lines)
    s.close()
    assert "error" in rest[-1], rest[-3:]
    assert "runner" in rest[-1]["error"] and "SIGKILL" in rest[-1]["error"]
    status, answer = gemma_daemon.request("POST", "/api/generate", {"model": "gemma", "prompt": "Hi", "raw": True,
                                                              "stream": False, "options": {**GREEDY, "num_predict": 3}})
    assert status == 200 and answer["eval_count"] == 3
    assert set(runner_pids(gemma_daemon)).isdisjoint(pids)


def test_keep_alive_zero_unloads_after_the_request(gemma_daemon: Daemon) -> None:
    before = set(runner_pids(gemma_daemon))
    # Another num_thread is another instance of the model: a runner of its own.
    s = Stream(gemma_daemon.socket, "/api/generate", {"model": "gemma", "prompt": "Hello", "raw": True, "keep_alive": 0,
                                                 "options": {**GREEDY, "num_thread": 1, "num_predict": 40}})
    lines = iter(s)
    next(lines)
    started = set(runner_pids(gemma_daemon)) - before
    assert len(started) == 1  # its runner, loaded for this request
    assert list(lines)[-1]["done"] is True
    s.close()
    deadline = time.monotonic() + 10
    while started & set(runner_pids(gemma_daemon)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not started & set(runner_pids(gemma_daemon)), "the runner for keep_alive 0 is still there"


def test_a_chat_longer_than_the_context_loses_its_oldest_turns(gemma_daemon: Daemon) -> None:
    # tiny's context is 256 tokens, one per byte: six 80-byte turns cannot all fit.
    turns = [{"role": "system", "content": "Be brief."}]
    for n in range(6):
        turns += [{"role": "user", "content": f"question {n} " + "x" * 70},
                  {"role": "assistant", "content": f"answer {n} " + "y" * 70}]
    turns.append({"role": "user", "content": "and the last question?"})
    status, answer = gemma_daemon.request("POST", "/api/chat", {"model": "tiny", "messages": turns, "stream": False,
                                                          "options": {"num_predict": 4}})
    assert status == 200, answer
    assert 0 < answer["prompt_eval_count"] < 256
    status, refused = gemma_daemon.request("POST", "/api/chat", {"model": "tiny", "stream": False,
                                                           "messages": [{"role": "user", "content": "z" * 400}]})
    assert status == 400 and "num_ctx" in refused["error"]
    assert "dropped the" in gemma_daemon.log()
