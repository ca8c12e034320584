"""The official `ollama` Python client against the session's real r1 daemon, over the socket and over TCP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.support.daemons import Daemon
from tests.support.tinymodels import GEMMA_TEMPLATE, write_tiny_gguf

GREEDY = {"temperature": 0}
# Renders the tools offered, as tool-trained templates do (Hermes style).
TOOLS_TEMPLATE = ("{{ bos_token }}{% if tools %}You may call these tools:\n{{ tools | tojson }}\n"
                  "Answer with a JSON tool call.\n{% endif %}" + GEMMA_TEMPLATE.removeprefix("{{ bos_token }}"))
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
# A tool call as JSON, constrained by a grammar so the base model writes one every time.
CALL_SCHEMA = {"type": "object", "required": ["name", "arguments"], "properties": {
    "name": {"type": "string", "enum": ["get_weather"]},
    "arguments": {"type": "object", "required": ["city"],
                  "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 12}}}}}


@pytest.fixture(scope="module")
def client(gemma_daemon: Daemon) -> ollama.Client:
    """Over the Unix socket, with an httpx transport."""
    return ollama.Client(host="http://localhost", transport=httpx.HTTPTransport(uds=str(gemma_daemon.socket)))


@pytest.fixture(scope="module")
def gemma_chat(client: ollama.Client) -> str:
    client.create(model="ollama-chat", from_="gemma", template=GEMMA_TEMPLATE,
                  parameters={"stop": ["<end_of_turn>"], "num_predict": 24})
    return "ollama-chat"


def names(listing: Any) -> set[str]:
    return {m.model for m in listing.models}


def test_list_show_copy_delete(client: ollama.Client, gemma_chat: str) -> None:
    assert {"gemma:latest", "ollama-chat:latest"} <= names(client.list())
    shown = client.show(gemma_chat)
    assert shown.template == GEMMA_TEMPLATE and "stop" in shown.parameters
    assert shown.details.family == "gemma3" and shown.details.quantization_level == "Q4_K_M"
    assert shown.modelinfo["general.architecture"] == "gemma3" and "completion" in shown.capabilities
    assert "TEMPLATE" in shown.modelfile and "PARAMETER stop" in shown.modelfile
    client.copy("gemma", "gemma-copy")
    assert "gemma-copy:latest" in names(client.list())
    client.delete("gemma-copy")
    assert "gemma-copy:latest" not in names(client.list())


def test_unknown_models_are_404_response_errors(client: ollama.Client) -> None:
    for call in (lambda: client.show("nope"), lambda: client.generate("nope", "hi"),
                 lambda: client.chat("nope", [{"role": "user", "content": "hi"}]), lambda: client.delete("nope")):
        with pytest.raises(ollama.ResponseError) as caught:
            call()
        assert caught.value.status_code == 404 and "not found" in caught.value.error


def test_pull_streams_progress(client: ollama.Client) -> None:
    events = list(client.pull("acme/tiny-GGUF", stream=True))
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert any(e.total and e.completed == e.total for e in events)
    assert "hf.co/acme/tiny-GGUF:latest" in names(client.list())  # no tag asked: the default quant, named latest


def test_generate_streamed_and_not(client: ollama.Client) -> None:
    whole = client.generate("gemma", "The capital of France is", raw=True, options={**GREEDY, "num_predict": 8})
    assert whole.done and whole.eval_count == 8 and whole.response.strip() and whole.total_duration > 0
    parts = list(client.generate("gemma", "The capital of France is", raw=True, stream=True,
                                 options={**GREEDY, "num_predict": 8}))
    assert parts[-1].done and parts[-1].done_reason == "length"
    assert len("".join(p.response for p in parts)) > 5


def test_generate_returns_its_context_and_continues_from_it(client: ollama.Client, gemma_chat: str) -> None:
    first = client.generate(gemma_chat, "Name a color.", options={**GREEDY, "num_predict": 6})
    assert first.context and first.context[0] == 2  # Gemma's <bos>: the rendered prompt, then the answer
    assert len(first.context) >= first.prompt_eval_count + 1
    again = client.generate(gemma_chat, "And another one?", context=first.context, options={**GREEDY, "num_predict": 6})
    # The earlier exchange came before this prompt, and its slot still held it: only the new prompt was evaluated.
    assert again.context[:len(first.context)] == first.context
    assert 0 < again.prompt_eval_count < len(again.context) - len(first.context)
    assert client.generate("gemma", "Hi", raw=True, options={**GREEDY, "num_predict": 1}).context is None
    for bad in ({"raw": True, "context": first.context}, {"context": [10**9]}):
        with pytest.raises(ollama.ResponseError) as caught:
            client.generate(gemma_chat, "Hi", options={**GREEDY, "num_predict": 1}, **bad)
        assert caught.value.status_code == 400
    assert "outside this model's vocabulary" in caught.value.error


def test_chat_streamed_and_not(client: ollama.Client, gemma_chat: str) -> None:
    messages = [{"role": "user", "content": "Name a color."}]
    answer = client.chat(gemma_chat, messages, options=GREEDY)
    assert answer.message.role == "assistant" and answer.message.content.strip() and answer.done
    parts = list(client.chat(gemma_chat, messages, options=GREEDY, stream=True))
    assert parts[-1].done and parts[-1].eval_count >= 1
    assert "".join(p.message.content for p in parts).strip()


def test_chat_with_tools_returns_tool_calls(client: ollama.Client) -> None:
    client.create(model="gemma-hermes", from_="gemma", template=TOOLS_TEMPLATE)
    answer = client.chat("gemma-hermes", [{"role": "user", "content": "What is the weather in Paris?"}],
                         tools=[WEATHER_TOOL], format=CALL_SCHEMA, options={**GREEDY, "num_predict": 60})
    assert answer.message.tool_calls, answer
    call = answer.message.tool_calls[0]
    assert call.function.name == "get_weather" and isinstance(call.function.arguments["city"], str)
    assert answer.message.content == ""
    # The call and its result go back into the conversation, through the template.
    follow = client.chat("gemma-hermes", [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
        {"role": "tool", "content": "Sunny, 21 C", "tool_name": "get_weather"},
    ], tools=[WEATHER_TOOL], options={**GREEDY, "num_predict": 8})
    # The first request's prompt is in a slot: without the call and its result this prompt would be that one,
    # and one token would be evaluated; with them, the call's JSON and the result's turn are.
    assert follow.done and follow.prompt_eval_count > 10


def test_json_schema_output_parses(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    answer = client.generate("smollm2:135m", "A person as JSON:", raw=True, format=schema, options={**GREEDY, "num_predict": 60})
    person = json.loads(answer.response)
    assert isinstance(person["name"], str) and isinstance(person["age"], int)


def test_ps_lists_loaded_models(client: ollama.Client) -> None:
    client.generate("gemma", "Hi", raw=True, options={**GREEDY, "num_predict": 1})
    # Gemma's other names share its runners (one per set of load options) and ps names whichever
    # name loaded each: other tests' requests may have loaded this one, so find Gemma by its family.
    loaded = [m for m in client.ps().models if m.details.family == "gemma3"]
    assert 4096 in {m.context_length for m in loaded}
    for model in loaded:
        assert model.size > 200_000_000 and model.size_vram == 0
        assert model.expires_at is not None


def test_create_from_uploaded_blobs(client: ollama.Client, tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "up.gguf", seed=9)
    digest = client.create_blob(path)
    progress = list(client.create(model="uploaded", files={"up.gguf": digest}, system="Be brief.", stream=True))
    assert progress[-1].status == "success"
    shown = client.show("uploaded")
    assert shown.details.format == "gguf" and 'SYSTEM """Be brief."""' in shown.modelfile
    with pytest.raises(ollama.ResponseError) as caught:
        client.create(model="broken", files={"x.gguf": "sha256:" + "0" * 64})
    assert caught.value.status_code == 400 and "upload it first" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.create(model="smaller", from_="gemma", quantize="q4_K_M")
    assert caught.value.status_code == 400 and "re-quantize" in caught.value.error


def test_the_client_over_tcp(gemma_daemon: Daemon) -> None:
    tcp = ollama.Client(host=f"http://127.0.0.1:{gemma_daemon.port}")
    assert "gemma:latest" in names(tcp.list())
    answer = tcp.generate("gemma", "Hello", raw=True, options={**GREEDY, "num_predict": 3})
    assert answer.eval_count == 3


def test_the_openai_client_over_tcp(gemma_daemon: Daemon, gemma_chat: str) -> None:
    import openai  # the other official client, on the same TCP listener

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{gemma_daemon.port}/v1", api_key="unused-on-loopback")
    assert f"{gemma_chat}:latest" in {m.id for m in client.models.list()}
    answer = client.chat.completions.create(model=gemma_chat, max_tokens=4, temperature=0,
                                            messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.role == "assistant" and answer.usage.completion_tokens <= 4
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])
