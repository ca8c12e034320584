"""Remote engines behind r1's names: a fake OpenAI-compatible upstream (faults, reasoning, tool calls),
llama.cpp's own server, and the session's r1 daemon on TCP as an Ollama-dialect upstream; through r1's
socket with the official `ollama` and `openai` clients and the CLI."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.support.daemons import Daemon, private_daemon
from tests.support.fakeupstream import ANSWER, INLINE, MAX_MODEL_LEN, THINKING, TOOL_CALL, FakeUpstream, embedding
from tests.support.llamaserver import llama_server
from tests.support.loopback import free_port
from tests.support.polling import wait_until
from tests.support.unixhttp import Stream
from tests.support.tinymodels import smollm2_gguf

KEY = "sk-test-9f8e7d6c5b4a"  # must never show anywhere r1 writes
PLAIN = "Hello there, remote friend."
BEHAVIOURS = ("fault-401", "fault-429", "fault-500", "cut-after-3", "no-first-byte", "reasoning-content",
              "reasoning-field", "inline-think", "tool-call")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=KEY) as fake:
        fake.add_model("plain", text=PLAIN)
        yield fake


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("remotes")
    with private_daemon(root, FAKE_KEY=KEY, R1_REMOTE_FIRST_BYTE_TIMEOUT="2s") as daemon:
        daemon.cli("remote", "add", "fake", upstream.url + "/v1", "--api-key-env", "FAKE_KEY")
        for model in ("plain", *BEHAVIOURS):
            daemon.cli("create", f"fake-{model}", "--from", f"fake:{model}")
        yield daemon


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> ollama.Client:
    return ollama.Client(host="http://localhost", transport=httpx.HTTPTransport(uds=str(daemon.socket)))


@pytest.fixture(scope="module")
def oai(daemon: Daemon) -> openai.OpenAI:
    http = httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)))
    return openai.OpenAI(base_url="http://localhost/v1", api_key="r1", http_client=http, max_retries=0)


def chat(daemon: Daemon, model: str, **extra: Any) -> tuple[int, Any]:
    return daemon.request("POST", "/api/chat", {"model": model, "messages": [{"role": "user", "content": "hi"}],
                                                "stream": False, **extra})


def test_remote_models_are_listed_shown_and_forgotten_as_names(daemon: Daemon, upstream: FakeUpstream) -> None:
    listed = daemon.cli("remote", "list").stdout
    assert "fake" in listed and "$FAKE_KEY" in listed and upstream.url in listed
    offered = daemon.cli("remote", "models", "fake", "--json").stdout
    assert {"id": "plain", "context_length": MAX_MODEL_LEN} in json.loads(offered)
    rows = daemon.cli("list").stdout.splitlines()
    [row] = [r for r in rows if r.startswith("fake-plain:latest")]
    assert row.split()[2:4] == ["remote", "remote"]  # SIZE and FORMAT: nothing on disk
    status, tags = daemon.request("GET", "/api/tags")
    [tag] = [m for m in tags["models"] if m["name"] == "fake-plain:latest"]
    assert tag["remote"] == {"name": "fake", "model": "plain"} and tag["size"] == 0
    shown = daemon.cli("show", "fake-plain").stdout
    words = " ".join(shown.split())  # the columns' widths aside
    assert "upstream model plain" in words and f"context length {MAX_MODEL_LEN}" in words
    [model] = [m for m in daemon.request("GET", "/v1/models")[1]["data"] if m["id"] == "fake-plain:latest"]
    assert model["owned_by"] == "fake" and model["remote"] == {"name": "fake", "model": "plain"}
    daemon.cli("create", "fake-gone", "--from", "fake:plain")
    daemon.cli("rm", "fake-gone")  # forgets the name only: the remote and its other models stay
    assert chat(daemon, "fake-plain")[0] == 200
    missing = daemon.cli("create", "fake-nope", "--from", "fake:no-such-model", check=False)
    assert missing.returncode == 1 and "r1 remote models fake" in missing.stderr


def test_chat_and_generate_through_the_official_clients(client: ollama.Client, oai: openai.OpenAI, daemon: Daemon,
                                                        upstream: FakeUpstream) -> None:
    upstream.reset_counters()
    whole = client.chat("fake-plain", [{"role": "user", "content": "Say hello, please"}], options={"temperature": 0.2})
    assert whole.message.content == PLAIN and whole.done_reason == "stop"
    assert (whole.prompt_eval_count, whole.eval_count) == (3, 4)  # the upstream's own counts
    sent = upstream.requests[-1]
    assert sent.headers["Authorization"] == f"Bearer {KEY}" and sent.body["model"] == "plain"
    assert sent.body["temperature"] == 0.2 and sent.body["stream_options"] == {"include_usage": True}
    parts = list(client.chat("fake-plain", [{"role": "user", "content": "hi"}], stream=True))
    assert "".join(p.message.content for p in parts) == PLAIN and len(parts) > 3 and parts[-1].done
    generated = client.generate("fake-plain", "Say hello", options={"num_predict": 2})
    assert generated.response == "Hello there," and generated.done_reason == "length"
    assert upstream.requests[-1].body["max_tokens"] == 2
    assert upstream.requests[-1].body["messages"] == [{"role": "user", "content": "Say hello"}]
    raw = oai.completions.create(model="fake-plain", prompt="Once upon", max_tokens=10)
    assert raw.choices[0].text == PLAIN and upstream.requests[-1].path == "/v1/completions"
    streamed = list(oai.chat.completions.create(model="fake-plain", messages=[{"role": "user", "content": "hi"}],
                                                stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == PLAIN
    assert streamed[-1].usage.completion_tokens == 4


def test_cost_comes_with_each_answer_once_a_price_is_set(daemon: Daemon, oai: openai.OpenAI) -> None:
    daemon.cli("create", "fake-priced", "--from", "fake:plain")
    assert "cost" not in chat(daemon, "fake-priced")[1]
    daemon.cli("remote", "price", "fake-priced", "--input", "0.55", "--output", "2.19")
    _, answer = chat(daemon, "fake-priced")
    assert answer["cost"] == pytest.approx((1 * 0.55 + 4 * 2.19) / 1e6)
    usage = oai.chat.completions.create(model="fake-priced", messages=[{"role": "user", "content": "hi"}]).usage
    assert usage.model_extra["cost"] == pytest.approx((1 * 0.55 + 4 * 2.19) / 1e6)  # where OpenRouter puts it
    ran = daemon.cli("run", "fake-priced", "hi", "--verbose")
    assert ran.stdout.strip() == PLAIN and "cost:                 $0.000009" in ran.stderr
    assert "$0.55 in, $2.19 out" in daemon.cli("show", "fake-plain").stdout  # the price is the upstream model's


@pytest.mark.parametrize("model", ["reasoning-content", "reasoning-field", "inline-think"])
def test_reasoning_comes_out_as_thinking_whatever_field_the_upstream_uses(client: ollama.Client, oai: openai.OpenAI,
                                                                          model: str) -> None:
    answer = client.chat(f"fake-{model}", [{"role": "user", "content": "2+2?"}])
    assert (answer.message.thinking, answer.message.content) == (THINKING, ANSWER)
    hidden = client.chat(f"fake-{model}", [{"role": "user", "content": "2+2?"}], think=False)
    assert (hidden.message.thinking, hidden.message.content) == (None, ANSWER)
    message = oai.chat.completions.create(model=f"fake-{model}", messages=[{"role": "user", "content": "2+2?"}]).choices[0].message
    assert (message.reasoning_content, message.content) == (THINKING, ANSWER)  # type: ignore[attr-defined]


def test_an_inline_think_block_is_split_wherever_the_chunks_cut_it(daemon: Daemon) -> None:
    for at in range(len(INLINE) + 1):
        status, made = daemon.request("POST", "/api/create", {"model": "fake-inline", "from": f"fake:inline-think-{at}",
                                                              "stream": False})
        assert status == 200, made
        status, answer = chat(daemon, "fake-inline")
        assert status == 200 and (answer["message"].get("thinking"), answer["message"]["content"]) == (THINKING, ANSWER), at


def test_tool_calls_come_back_in_each_dialects_shape(client: ollama.Client, oai: openai.OpenAI,
                                                     upstream: FakeUpstream) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    answer = client.chat("fake-tool-call", [{"role": "user", "content": "Weather in Paris?"}], tools=[tool])
    [call] = answer.message.tool_calls
    assert (call.function.name, call.function.arguments) == ("get_weather", {"city": "Paris"})
    assert upstream.requests[-1].body["tools"] == [tool]
    message = oai.chat.completions.create(model="fake-tool-call", tools=[tool],
                                          messages=[{"role": "user", "content": "Weather in Paris?"}]).choices[0].message
    assert json.loads(message.tool_calls[0].function.arguments) == json.loads(TOOL_CALL["function"]["arguments"])
    # The call and its result go back upstream as OpenAI wants them: an id on the call, the same id on the result.
    client.chat("fake-plain", [{"role": "user", "content": "Weather in Paris?"},
                               {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
                               {"role": "tool", "content": "Sunny", "tool_name": "get_weather"}])
    sent = upstream.requests[-1].body["messages"]
    assert sent[2]["tool_call_id"] == sent[1]["tool_calls"][0]["id"]
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}


def errors_of(daemon: Daemon) -> dict[str, tuple[int, Any, dict[str, str]]]:
    """Each fault model's answer through r1: status, body, headers."""
    import http.client
    import socket

    found = {}
    for model in ("fault-401", "fault-429", "fault-500", "no-first-byte"):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(daemon.socket))
        conn = http.client.HTTPConnection("localhost", timeout=30)
        conn.sock = sock
        conn.request("POST", "/api/chat", json.dumps({"model": f"fake-{model}", "stream": False,
                                                      "messages": [{"role": "user", "content": "hi"}]}))
        response = conn.getresponse()
        found[model] = (response.status, json.loads(response.read()), dict(response.headers))
        conn.close()
    return found


def test_upstream_faults_are_clear_errors_and_the_key_never_shows(daemon: Daemon, upstream: FakeUpstream) -> None:
    found = errors_of(daemon)
    status, body, _ = found["fault-401"]
    assert status == 502 and "refused the key" in body["error"] and "FAKE_KEY" in body["error"]
    status, body, headers = found["fault-429"]
    assert status == 429 and headers["Retry-After"] == "7" and "rate-limiting" in body["error"]
    status, body, _ = found["fault-500"]
    assert status == 502 and upstream.url in body["error"]
    status, body, _ = found["no-first-byte"]
    assert status == 504 and "R1_REMOTE_FIRST_BYTE_TIMEOUT" in body["error"]
    stream = Stream(daemon.socket, "/api/chat", {"model": "fake-cut-after-3", "messages": [{"role": "user", "content": "hi"}]})
    lines = list(stream)
    stream.close()
    assert [bool(line.get("message", {}).get("content")) for line in lines[:3]] == [True] * 3
    assert "broke off its answer" in lines[-1]["error"]  # in band: the status was sent with the first chunk
    # Nowhere r1 writes: the log, what show and metrics say, the errors, the remote list.
    seen = {"log": daemon.log(), "errors": json.dumps(found), "stream": json.dumps(lines),
            "remote list": daemon.cli("remote", "list", "--json").stdout, "metrics": daemon.request("GET", "/metrics")[1],
            "show": json.dumps(daemon.request("POST", "/api/show", {"model": "fake-plain"})[1])}
    assert "fake-plain" in seen["log"] and "r1_requests_total" in seen["metrics"]  # each was read for real
    assert [where for where, text in seen.items() if KEY in text] == []


def test_a_pool_keeps_answering_while_one_url_is_down(tmp_path: Path) -> None:
    with FakeUpstream() as first, FakeUpstream() as second:
        for fake in (first, second):
            fake.add_model("plain", text=PLAIN)
        with private_daemon(tmp_path) as daemon:
            daemon.cli("remote", "add", "pool", first.url, "--url", second.url)
            daemon.cli("create", "pooled", "--from", "pool:plain")
            for _ in range(4):
                assert chat(daemon, "pooled")[0] == 200
            assert first.requests and second.requests  # the least busy URL: both get requests
            first.stop()
            second.reset_counters()
            for _ in range(4):
                status, answer = chat(daemon, "pooled")
                assert status == 200 and answer["message"]["content"] == PLAIN
            assert len([r for r in second.requests if r.path == "/v1/chat/completions"]) == 4
            first.start()  # the same URL again: the health check finds it and requests come back to it
            first.reset_counters()
            wait_until(lambda: chat(daemon, "pooled")[0] == 200 and any(
                r.path == "/v1/chat/completions" for r in first.requests), timeout=15, interval=0.2)
            assert f"{first.url}/v1 answers again" in daemon.log()


def test_an_unreachable_remote_and_offline_mode_are_refused_clearly(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for root in ("a", "b"):
        (tmp_path / root).mkdir()
    with private_daemon(tmp_path / "a") as daemon:
        added = daemon.cli("remote", "add", "gone", dead)
        assert added.stdout.startswith("added remote gone") and "Warning: r1 could not list the models of remote " \
            "gone" in added.stderr and "cannot be reached" in added.stderr, added
        failed = daemon.cli("remote", "models", "gone", check=False)
        assert failed.returncode == 1 and "remote gone cannot be reached" in failed.stderr and dead in failed.stderr
        with FakeUpstream() as fake:  # a URL that is not an OpenAI API: its 404 points to what to check
            daemon.cli("remote", "add", "wrong", fake.url + "/not-v1")
            wrong = daemon.cli("remote", "models", "wrong", check=False)
        assert wrong.returncode == 1 and "has no such model or route" in wrong.stderr
        assert "r1 remote models wrong" in wrong.stderr
    with private_daemon(tmp_path / "b", R1_OFFLINE="1") as daemon:
        daemon.cli("remote", "add", "gone", dead)
        refused = daemon.cli("create", "x", "--from", "gone:m", check=False)
        assert refused.returncode == 1 and "R1_OFFLINE" in refused.stderr


def test_another_r1_daemon_as_an_ollama_dialect_upstream(daemon: Daemon, gemma_daemon: Daemon) -> None:
    daemon.cli("remote", "add", "ollie", f"http://127.0.0.1:{gemma_daemon.port}", "--dialect", "ollama")
    assert "gemma-chat:latest" in daemon.cli("remote", "models", "ollie").stdout
    daemon.cli("create", "ollie-chat", "--from", "ollie:gemma-chat:latest")
    options = {"temperature": 0, "num_predict": 6}
    status, there = gemma_daemon.request("POST", "/api/chat", {"model": "gemma-chat", "stream": False, "options": options,
                                                               "messages": [{"role": "user", "content": "Name a color."}]})
    status, here = daemon.request("POST", "/api/chat", {"model": "ollie-chat", "stream": False, "options": options,
                                                        "messages": [{"role": "user", "content": "Name a color."}]})
    assert status == 200 and here["message"]["content"] == there["message"]["content"]
    assert here["eval_count"] == 6 and "tokens_counted_by_r1" not in here  # the upstream's counts


def test_llama_cpps_own_server_as_an_openai_upstream(daemon: Daemon, client: ollama.Client) -> None:
    with llama_server(smollm2_gguf(), alias="smollm2") as url:
        daemon.cli("remote", "add", "llamacpp", url)
        daemon.cli("create", "remote-smollm2", "--from", "llamacpp:smollm2")
        parts = list(client.chat("remote-smollm2", [{"role": "user", "content": "What is the capital of France?"}],
                                 stream=True, options={"temperature": 0, "num_predict": 12}))
        final = parts[-1]
        assert "".join(p.message.content for p in parts).strip() and final.done_reason == "length"
        # llama-cpp-python's server sends no usage in a stream: r1 counts the parts it got, and says so.
        assert final.eval_count == 12
        ran = daemon.cli("run", "remote-smollm2", "Say hi.", "--verbose")
        assert ran.stdout.strip() and "counted by r1" in ran.stderr


def test_embeddings_of_a_remote_model_in_both_dialects(client: ollama.Client, oai: openai.OpenAI,
                                                        upstream: FakeUpstream) -> None:
    ours = client.embed("fake-plain", ["first text", "second"])
    assert ours.embeddings == [embedding("first text"), embedding("second")] and ours.prompt_eval_count == 3
    assert upstream.requests[-1].path == "/v1/embeddings" and upstream.requests[-1].body["input"] == ["first text", "second"]
    theirs = oai.embeddings.create(model="fake-plain", input="first text")
    assert theirs.data[0].embedding == pytest.approx(embedding("first text")) and theirs.usage.prompt_tokens == 2


def test_ps_shows_remote_models_with_requests_in_flight(daemon: Daemon) -> None:
    import threading

    # An upstream that never answers holds the request until R1_REMOTE_FIRST_BYTE_TIMEOUT (2 s here).
    waiting = threading.Thread(target=chat, args=(daemon, "fake-no-first-byte"))
    waiting.start()

    def listed() -> bool:
        models = daemon.request("GET", "/api/ps")[1]["models"]
        return any(m["name"] == "fake-no-first-byte:latest" and m["requests"] == 1 for m in models)

    wait_until(listed, timeout=2)
    shown = daemon.cli("ps").stdout
    assert "REMOTE MODEL" in shown and "fake-no-first-byte:latest" in shown and "no-first-byte" in shown
    waiting.join()
    assert not any(m.get("remote") for m in daemon.request("GET", "/api/ps")[1]["models"])


def test_a_modelfile_builds_on_a_remote_model(daemon: Daemon, upstream: FakeUpstream, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text('FROM fake:plain\nSYSTEM """Answer briefly."""\nPARAMETER temperature 0.3\nPARAMETER num_predict 3\n')
    daemon.cli("create", "fake-brief", "-f", str(modelfile))
    status, answer = chat(daemon, "fake-brief")
    assert status == 200 and answer["message"]["content"] == "Hello there, remote" and answer["done_reason"] == "length"
    sent = upstream.requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert (sent["temperature"], sent["max_tokens"]) == (0.3, 3)
    assert "FROM fake:plain" in daemon.request("POST", "/api/show", {"model": "fake-brief"})[1]["modelfile"]
    modelfile.write_text('FROM fake:plain\nTEMPLATE """{{ .Prompt }}"""\n')
    refused = daemon.cli("create", "fake-templated", "-f", str(modelfile), check=False)
    assert refused.returncode == 1 and "leave TEMPLATE out" in refused.stderr


def test_requests_beyond_r1_remote_parallel_wait_their_turn(tmp_path: Path) -> None:
    import threading

    with FakeUpstream() as fake, private_daemon(tmp_path, R1_REMOTE_PARALLEL="1", R1_REMOTE_FIRST_BYTE_TIMEOUT="2s") as daemon:
        daemon.cli("remote", "add", "one", fake.url)
        daemon.cli("create", "stuck", "--from", "one:no-first-byte")
        fake.reset_counters()
        waiting = [threading.Thread(target=chat, args=(daemon, "stuck")) for _ in range(2)]
        for thread in waiting:
            thread.start()
        wait_until(lambda: any(m.get("requests") == 2 for m in daemon.request("GET", "/api/ps")[1]["models"]))
        for thread in waiting:
            thread.join()
        first, second = [r for r in fake.requests if r.method == "POST"]
        # The second reached the upstream only when the first had ended, at its first-byte timeout.
        assert second.at - first.at > 1.5


def test_a_client_that_leaves_mid_answer_ends_the_upstream_request(daemon: Daemon, upstream: FakeUpstream) -> None:
    daemon.cli("create", "fake-slow", "--from", "fake:slow")
    stream = Stream(daemon.socket, "/api/chat", {"model": "fake-slow", "messages": [{"role": "user", "content": "hi"}]})
    lines = iter(stream)
    assert next(lines)["message"]["content"] and next(lines)["message"]["content"]
    stream.close()
    wait_until(lambda: "slow" in upstream.abandoned, timeout=5)  # 20 x 9 chunks would take 18 s


def test_images_for_a_remote_model_are_refused_not_dropped(daemon: Daemon) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    status, body = chat(daemon, "fake-plain", messages=[{"role": "user", "content": "hi", "images": [png]}])
    assert status == 400 and "does not pass 'images' to remote engines" in body["error"]
