"""Generation through a real daemon and real runners: Gemma 3 270M on llama-cpp-python, tiny GGUF fixtures."""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import Daemon, private_daemon
from tinymodels import THINK_TEMPLATE, write_tiny_gguf

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}<start_of_turn>model\n"
)
GREEDY = {"temperature": 0, "num_thread": 2}
STATS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")


class Stream:
    """An NDJSON response read line by line, with the socket at hand to drop mid-stream."""

    def __init__(self, socket_path: Path, path: str, body: dict[str, Any], timeout: float = 120) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(socket_path))
        conn = http.client.HTTPConnection("localhost")
        conn.sock = self.sock
        conn.request("POST", path, body=json.dumps(body))
        self.response = conn.getresponse()
        self.status = self.response.status

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while line := self.response.readline():
            if line.strip():
                yield json.loads(line)

    def close(self) -> None:
        self.response.close()  # the socket's file descriptor closes only when its reader is closed too
        self.sock.close()


def stream(daemon: Daemon, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    s = Stream(daemon.socket, path, body)
    try:
        assert s.status == 200, s.response.read()
        return list(s)
    finally:
        s.close()


def runner_pids(daemon: Daemon) -> list[int]:
    """The daemon's live runner processes (an exited one not yet reaped does not count)."""
    pids = []
    for child in psutil.Process(daemon.process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "r1.daemon.runner" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:  # gone meanwhile
            pass
    return pids


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, gemma_path: Path) -> Iterator[Daemon]:
    """One daemon for the module, with Gemma (raw), gemma-chat (r1 create template) and tiny models."""
    root = tmp_path_factory.mktemp("generate")
    with private_daemon(root, R1_LOG_LEVEL="DEBUG") as daemon:
        daemon.cli("import", str(gemma_path), "--name", "gemma")
        status, _ = daemon.request("POST", "/api/create", {
            "model": "gemma-chat", "from": "gemma", "template": GEMMA_TEMPLATE, "stream": False,
            "parameters": {"stop": ["<end_of_turn>"], "num_predict": 24},
        })
        assert status == 200
        daemon.cli("import", str(write_tiny_gguf(root / "tiny.gguf")), "--name", "tiny")
        daemon.cli("import", str(write_tiny_gguf(root / "think.gguf", chat_template=THINK_TEMPLATE, seed=1)),
                   "--name", "thinker")
        yield daemon


def test_raw_generate_is_greedy_and_reports_its_stats(served: Daemon) -> None:
    body = {"model": "gemma", "prompt": "The capital of France is", "raw": True, "stream": False,
            "options": {**GREEDY, "num_predict": 12}}
    status, first = served.request("POST", "/api/generate", body)
    assert status == 200, first
    assert first["done"] is True and first["done_reason"] == "length"
    assert "France" in first["response"]  # a real model continues the prompt sensibly
    assert first["eval_count"] == 12 and first["prompt_eval_count"] >= 5
    for field in STATS:
        assert isinstance(first[field], int) and first[field] >= 0, field
    assert first["total_duration"] >= first["prompt_eval_duration"] + first["eval_duration"]
    _, second = served.request("POST", "/api/generate", body)
    assert second["response"] == first["response"]  # temperature 0: the same tokens
    assert second["load_duration"] < first["load_duration"] or first["load_duration"] < 50_000_000  # hot the second time


def test_streamed_generate_matches_the_whole_answer(served: Daemon) -> None:
    body = {"model": "gemma", "prompt": "Once upon a time", "raw": True, "options": {**GREEDY, "num_predict": 20}}
    # Both timed runs reuse the cached prompt: a prompt evaluated in one batch and one whose last
    # token is evaluated alone differ in the last bits, enough to flip a greedy choice now and then.
    served.request("POST", "/api/generate", {**body, "stream": False})
    chunks = stream(served, "/api/generate", body)
    assert all(c["done"] is False for c in chunks[:-1]) and chunks[-1]["done"] is True
    assert chunks[-1]["eval_count"] == 20
    _, whole = served.request("POST", "/api/generate", {**body, "stream": False})
    assert "".join(c["response"] for c in chunks) == whole["response"]
    assert all(c["model"] == "gemma" and c["created_at"].endswith("Z") for c in chunks)


def test_chat_through_a_created_template_stops_at_end_of_turn(served: Daemon) -> None:
    status, show = served.request("POST", "/api/show", {"model": "gemma-chat"})
    assert status == 200
    assert show["template"] == GEMMA_TEMPLATE
    assert 'stop                           "<end_of_turn>"' in show["parameters"]
    status, answer = served.request("POST", "/api/chat", {
        "model": "gemma-chat", "stream": False, "options": GREEDY,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    })
    assert status == 200, answer
    assert answer["message"]["role"] == "assistant"
    assert answer["message"]["content"].strip()
    assert "<end_of_turn>" not in answer["message"]["content"]
    assert answer["eval_count"] <= 24  # the model's PARAMETER num_predict


def test_chat_without_a_template_says_how_to_get_one(served: Daemon) -> None:
    status, body = served.request("POST", "/api/chat", {"model": "gemma", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400
    assert "no chat template" in body["error"] and "r1 create" in body["error"]


def test_json_format_and_schema_constrain_the_output(served: Daemon) -> None:
    status, answer = served.request("POST", "/api/generate", {
        "model": "gemma", "prompt": "A JSON object describing a cat:", "raw": True, "format": "json", "stream": False,
        "options": {**GREEDY, "num_predict": 30},
    })
    assert status == 200, answer
    if answer["done_reason"] == "stop":
        assert isinstance(json.loads(answer["response"]), dict)
    assert answer["response"].lstrip().startswith("{")
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    status, answer = served.request("POST", "/api/generate", {
        "model": "gemma", "prompt": "A cat as JSON:", "raw": True, "format": schema, "stream": False,
        "options": {**GREEDY, "num_predict": 80},
    })
    assert status == 200, answer
    assert answer["done_reason"] == "stop"
    parsed = json.loads(answer["response"])
    assert set(parsed) == {"name", "age"} and isinstance(parsed["age"], int)


def test_embed_returns_unit_vectors_of_the_model_width(served: Daemon) -> None:
    status, result = served.request("POST", "/api/embed", {"model": "gemma", "input": ["the sky is blue", "cats purr"]})
    assert status == 200, result
    width = served.request("POST", "/api/show", {"model": "gemma"})[1]["model_info"]["gemma3.embedding_length"]
    assert len(result["embeddings"]) == 2
    for vector in result["embeddings"]:
        assert len(vector) == width
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-3)
    assert result["embeddings"][0] != result["embeddings"][1]
    assert result["prompt_eval_count"] > 4
    status, single = served.request("POST", "/api/embed", {"model": "gemma", "input": "the sky is blue"})
    assert status == 200 and single["embeddings"] == [pytest.approx(result["embeddings"][0], abs=1e-4)]


def test_an_empty_prompt_loads_the_model(served: Daemon) -> None:
    [result] = stream(served, "/api/generate", {"model": "tiny"})
    assert result["done"] is True and result["done_reason"] == "load" and result["response"] == ""
    status, result = served.request("POST", "/api/chat", {"model": "tiny", "messages": [], "stream": False})
    assert status == 200 and result["done_reason"] == "load"


def test_prompt_opened_think_block_is_returned_as_thinking(served: Daemon) -> None:
    body = {"model": "thinker", "messages": [{"role": "user", "content": "2+2?"}], "stream": False,
            "options": {"num_predict": 8, "temperature": 0}}
    status, answer = served.request("POST", "/api/chat", body)
    assert status == 200, answer
    # A random-weight model never closes the block: everything it wrote is reasoning.
    assert answer["message"]["content"] == ""
    assert answer["message"].get("thinking", "") != "" or answer["eval_count"] == 0
    assert answer["thinking_unfinished"] is True and answer["done_reason"] == "length"
    status, hidden = served.request("POST", "/api/chat", {**body, "think": False})
    assert status == 200 and "thinking" not in hidden["message"] and hidden["message"]["content"] == ""
    status, show = served.request("POST", "/api/show", {"model": "thinker"})
    assert "thinking" in show["capabilities"]


def test_bad_requests_name_the_problem(served: Daemon) -> None:
    cases = [
        ({"model": "nope", "prompt": "hi"}, 404, "not found"),
        ({"model": "gemma", "prompt": "hi", "options": {"temperature": "hot"}}, 400, "temperature"),
        ({"model": "gemma", "prompt": "hi", "format": "xml"}, 400, "format"),
        ({"model": "gemma", "prompt": "hi", "keep_alive": "soon"}, 400, "keep_alive"),
        ({"prompt": "hi"}, 400, "model"),
    ]
    for body, code, word in cases:
        status, answer = served.request("POST", "/api/generate", body)
        assert status == code, (body, answer)
        assert word in answer["error"], answer
    status, answer = served.request("POST", "/api/generate", raw=b"{not json")
    assert status == 400 and "JSON" in answer["error"]


def test_a_client_that_leaves_cancels_its_generation(served: Daemon) -> None:
    long = {"model": "gemma", "prompt": "Count to a thousand: 1, 2,", "raw": True, "options": {**GREEDY, "num_predict": 3000}}
    s = Stream(served.socket, "/api/generate", long)
    pieces = [next(iter(s)) for _ in range(3)]
    assert all(p["done"] is False for p in pieces)
    s.close()
    started = time.monotonic()
    status, answer = served.request("POST", "/api/generate",
                                    {"model": "gemma", "prompt": "Hello", "raw": True, "stream": False,
                                     "options": {**GREEDY, "num_predict": 4}})
    assert status == 200 and answer["eval_count"] == 4
    assert time.monotonic() - started < 10  # 3000 tokens would take half a minute
    deadline = time.monotonic() + 5
    while "cancelled" not in served.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "cancelled" in served.log()


def test_a_runner_killed_mid_request_is_an_error_and_the_next_request_recovers(served: Daemon) -> None:
    s = Stream(served.socket, "/api/generate", {"model": "gemma", "prompt": "Tell me a story.", "raw": True,
                                                 "options": {**GREEDY, "num_predict": 3000}})
    lines = iter(s)
    assert next(lines)["done"] is False
    pids = runner_pids(served)
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    rest = list(lines)
    s.close()
    assert "error" in rest[-1], rest[-3:]
    assert "runner" in rest[-1]["error"] and "SIGKILL" in rest[-1]["error"]
    status, answer = served.request("POST", "/api/generate", {"model": "gemma", "prompt": "Hi", "raw": True,
                                                              "stream": False, "options": {**GREEDY, "num_predict": 3}})
    assert status == 200 and answer["eval_count"] == 3
    assert set(runner_pids(served)).isdisjoint(pids)


def test_keep_alive_zero_unloads_after_the_request(served: Daemon) -> None:
    before = set(runner_pids(served))
    # Another num_ctx is another instance of the model: a runner of its own.
    s = Stream(served.socket, "/api/generate", {"model": "gemma", "prompt": "Hello", "raw": True, "keep_alive": 0,
                                                 "options": {**GREEDY, "num_ctx": 1024, "num_predict": 40}})
    lines = iter(s)
    next(lines)
    started = set(runner_pids(served)) - before
    assert len(started) == 1  # its runner, loaded for this request
    assert list(lines)[-1]["done"] is True
    s.close()
    deadline = time.monotonic() + 10
    while started & set(runner_pids(served)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not started & set(runner_pids(served)), "the runner for keep_alive 0 is still there"


def test_a_chat_longer_than_the_context_loses_its_oldest_turns(served: Daemon) -> None:
    # tiny's context is 256 tokens, one per byte: six 80-byte turns cannot all fit.
    turns = [{"role": "system", "content": "Be brief."}]
    for n in range(6):
        turns += [{"role": "user", "content": f"question {n} " + "x" * 70},
                  {"role": "assistant", "content": f"answer {n} " + "y" * 70}]
    turns.append({"role": "user", "content": "and the last question?"})
    status, answer = served.request("POST", "/api/chat", {"model": "tiny", "messages": turns, "stream": False,
                                                          "options": {"num_predict": 4}})
    assert status == 200, answer
    assert 0 < answer["prompt_eval_count"] < 256
    status, refused = served.request("POST", "/api/chat", {"model": "tiny", "stream": False,
                                                           "messages": [{"role": "user", "content": "z" * 400}]})
    assert status == 400 and "num_ctx" in refused["error"]
    assert "dropped the" in served.log()
