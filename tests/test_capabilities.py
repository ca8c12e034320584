"""Capabilities computed from a model's files and template; fill-in-the-middle and token log probabilities
on the real llama-cpp-python runner (the session daemon)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from gguf import GGUFWriter, TokenType

from tests.support.daemons import Daemon
from r1.daemon.capabilities import capabilities
from r1.daemon.metadata import ModelFacts
from r1.daemon.metadata.gguf_reader import read_gguf_metadata
from r1.daemon.templates.go import to_jinja
from tests.support.tinymodels import (DEFAULT_TEMPLATE, FIM_ANSWER, THINK_TEMPLATE, TOOL_TEMPLATE, write_fim_gguf,
                                      write_tiny_gguf)

GGUF = ModelFacts(format="gguf", architecture="llama")
QWEN3_SWITCH = "{% if enable_thinking is defined and enable_thinking is false %}/no_think{% endif %}{{ messages }}"
OLLAMA_TEMPLATES = Path(__file__).parent / "fixtures" / "ollama_templates" / "templates"


def go(name: str) -> str:
    """One of Ollama's library templates, converted as `r1 create` and pulls convert it."""
    return to_jinja((OLLAMA_TEMPLATES / f"{name}.gotmpl").read_text())


# --- from facts and templates -------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(("facts", "template", "expected"), [
    (GGUF, None, ["completion"]),
    (GGUF, DEFAULT_TEMPLATE, ["completion"]),
    (GGUF, TOOL_TEMPLATE, ["completion", "tools"]),
    (GGUF, THINK_TEMPLATE, ["completion", "thinking"]),
    (GGUF, QWEN3_SWITCH, ["completion", "thinking"]),
    (GGUF, "<PRE>{{ prompt }}<SUF>{{ suffix }}<MID>", ["completion", "insert"]),
    (ModelFacts(format="gguf", architecture="llama", fim_tokens=True), DEFAULT_TEMPLATE, ["completion", "insert"]),
    (ModelFacts(format="gguf", architecture="llama", pooling_type=1), None, ["embedding"]),
    (ModelFacts(format="gguf", architecture="bert"), None, ["embedding"]),  # an encoder that names no pooling
    # The word in the text is not a variable the template reads: nothing to render tools with.
    (GGUF, "You have no tools. {{ messages[0]['content'] }}", ["completion"]),
    (GGUF, "{% if tools %}broken", ["completion"]),  # a template that does not parse offers nothing
    # Converted from Ollama's Go: what the Go template reads, as Ollama's own check sees it.
    (GGUF, go("qwen2.5"), ["completion", "tools", "insert"]),
    (GGUF, go("llama3-instruct"), ["completion"]),
    (GGUF, to_jinja("{{ if .Think }}/think{{ else }}/no_think{{ end }} {{ .Prompt }}"), ["completion", "thinking"]),
])
def test_capabilities_follow_the_files_and_the_template(facts: ModelFacts, template: str | None,
                                                        expected: list[str]) -> None:
    assert capabilities(facts, template) == expected


@pytest.mark.unit
def test_a_converted_go_template_fills_in_the_middle_as_ollama_runs_it() -> None:
    from r1.daemon.templates.template import render

    prompt = render(go("qwen2.5"), [{"role": "user", "content": "def add(a, b):"}], bos_token="", eos_token="",
                    suffix="    return total")
    assert prompt == "<|fim_prefix|>def add(a, b):<|fim_suffix|>    return total<|fim_middle|>"


# --- what the GGUF reader finds -------------------------------------------------------------------


def vocabulary_only(path: Path, tokens: list[str]) -> Path:
    """A GGUF with a vocabulary and nothing else: enough for the reader's tokenizer facts."""
    writer = GGUFWriter(path, "llama")
    writer.add_token_list(tokens)
    writer.add_token_types([TokenType.CONTROL] * len(tokens))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.unit
def test_fim_tokens_are_found_by_id_or_by_name(tmp_path: Path) -> None:
    assert read_gguf_metadata([write_fim_gguf(tmp_path / "ids.gguf")]).fim_tokens is True
    assert read_gguf_metadata([write_tiny_gguf(tmp_path / "none.gguf")]).fim_tokens is False
    # No ids: the names llama.cpp looks for, in StarCoder's and CodeLlama's spellings.
    for spelling in (["<fim_prefix>", "<fim_suffix>", "<fim_middle>"], ["▁<PRE>", "▁<SUF>", "▁<MID>"]):
        path = vocabulary_only(tmp_path / "named.gguf", ["<s>", *spelling, "a"])
        assert read_gguf_metadata([path]).fim_tokens is True, spelling
    # Tokens are matched whole: a longer token that starts with a FIM name is not one; all three are needed.
    for tokens in (["<fim_prefix>x", "<fim_suffix>", "<fim_middle>"], ["<fim_prefix>", "<fim_suffix>"]):
        assert read_gguf_metadata([vocabulary_only(tmp_path / "not.gguf", tokens)]).fim_tokens is False, tokens


@pytest.mark.unit
def test_pooling_type_is_read(tmp_path: Path) -> None:
    assert read_gguf_metadata([write_tiny_gguf(tmp_path / "cls.gguf", pooling_type=2)]).pooling_type == 2
    assert read_gguf_metadata([write_tiny_gguf(tmp_path / "chat.gguf")]).pooling_type is None


# --- real models on the session daemon ---------------------------------------------------------------

GREEDY = {"temperature": 0, "repeat_penalty": 1.0}  # no penalty: the pick is the argmax


@pytest.fixture(scope="module")
def client(gemma_daemon: Daemon) -> ollama.Client:
    return ollama.Client(host="http://localhost", transport=httpx.HTTPTransport(uds=str(gemma_daemon.socket)))


@pytest.fixture(scope="module")
def extra_models(gemma_daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> None:
    """filler (FIM tokens) and embedder (a mean-pooling model) beside the session's models."""
    root = tmp_path_factory.mktemp("capabilities")
    gemma_daemon.cli("import", str(write_fim_gguf(root / "filler.gguf", seed=3)), "--name", "filler")
    gemma_daemon.cli("import", str(write_tiny_gguf(root / "embedder.gguf", seed=4, pooling_type=1)),
                     "--name", "embedder")


@pytest.mark.parametrize(("model", "expected"), [
    ("gemma", ["completion"]),
    ("gemma-tools", ["completion", "tools"]),
    ("thinker", ["completion", "thinking"]),
    ("filler", ["completion", "insert"]),
    ("embedder", ["embedding"]),
])
def test_show_lists_what_real_models_can_do(client: ollama.Client, extra_models: None, model: str,
                                            expected: list[str]) -> None:
    assert client.show(model).capabilities == expected


def test_an_embedding_model_embeds_and_refuses_to_generate(client: ollama.Client, extra_models: None) -> None:
    vectors = client.embed("embedder", ["hello", "world"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) == 64 and math.isclose(sum(x * x for x in vectors[0]), 1, rel_tol=1e-4)
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate("embedder", "hello")
    assert caught.value.status_code == 400 and "does not support generate" in caught.value.error


def test_suffix_fills_in_the_middle_with_the_models_fim_tokens(client: ollama.Client, gemma_daemon: Daemon,
                                                              extra_models: None) -> None:
    options = {**GREEDY, "num_predict": 1}
    answer = client.generate("filler", "x=1;", suffix=";y=2", options=options)
    # The model answers FIM_ANSWER right after <|fim_middle|>: the prompt ended with it.
    assert answer.response == FIM_ANSWER
    # BOS, the three FIM tokens, and each part's bytes after SentencePiece's leading "▁" (3 bytes).
    assert answer.prompt_eval_count == 1 + 3 + (3 + 4) + (3 + 4)
    plain = client.generate("filler", "x=1;", options=options)  # its ChatML template, no FIM tokens
    assert plain.response != FIM_ANSWER
    status, completion = gemma_daemon.request("POST", "/v1/completions", {
        "model": "filler", "prompt": "x=1;", "suffix": ";y=2", "max_tokens": 1, "temperature": 0})
    assert status == 200 and completion["choices"][0]["text"] == FIM_ANSWER


def check_logprobs(entries: list[Any], text: str, top: int) -> None:
    """Greedy, unpenalised: each token is its place's likeliest, and the alternatives are a distribution."""
    assert "".join(e["token"] for e in entries) == text
    for entry in entries:
        alternatives = entry["top_logprobs"]
        assert len(alternatives) == top and entry["token"] == alternatives[0]["token"]
        assert entry["logprob"] == alternatives[0]["logprob"] <= 0
        assert [a["logprob"] for a in alternatives] == sorted((a["logprob"] for a in alternatives), reverse=True)
        assert sum(math.exp(a["logprob"]) for a in alternatives) <= 1 + 1e-6
        assert bytes(entry["bytes"]).decode() == entry["token"]


def test_logprobs_from_the_real_runner(client: ollama.Client, gemma_daemon: Daemon) -> None:
    body = {"model": "gemma", "prompt": "The capital of France is", "raw": True, "stream": False,
            "logprobs": True, "top_logprobs": 3, "options": {**GREEDY, "num_predict": 6}}
    status, whole = gemma_daemon.request("POST", "/api/generate", body)
    assert status == 200 and len(whole["logprobs"]) == whole["eval_count"] == 6
    check_logprobs(whole["logprobs"], whole["response"], 3)
    streamed = [lp.model_dump() for chunk in client.generate(**{k: v for k, v in body.items() if k != "stream"},
                                                             stream=True)
                for lp in chunk.logprobs or []]
    assert [e["token"] for e in streamed] == [e["token"] for e in whole["logprobs"]]
    assert [e["logprob"] for e in streamed] == pytest.approx([e["logprob"] for e in whole["logprobs"]], abs=1e-3)


def test_logprobs_end_with_the_text_a_stop_string_leaves(gemma_daemon: Daemon) -> None:
    # Greedy, Gemma continues "The capital of France is" with " the capital of ...".
    def generate(stop: str) -> dict[str, Any]:
        status, answer = gemma_daemon.request("POST", "/api/generate", {
            "model": "gemma", "prompt": "The capital of France is", "raw": True, "stream": False, "logprobs": True,
            "options": {**GREEDY, "num_predict": 6, "stop": [stop]}})
        assert status == 200 and answer["done_reason"] == "stop", answer
        return answer

    aligned = generate(" of")  # a whole token: its log probability goes with it
    assert aligned["response"] == " the capital"
    assert [e["token"] for e in aligned["logprobs"]] == [" the", " capital"]
    inside = generate("apital")  # inside a token: the token is reported, as part of it was shown
    assert inside["response"] == " the c"
    assert [e["token"] for e in inside["logprobs"]] == [" the", " capital"]


def test_openai_chat_logprobs_from_the_real_runner(gemma_daemon: Daemon) -> None:
    status, answer = gemma_daemon.request("POST", "/v1/chat/completions", {
        "model": "gemma-chat", "messages": [{"role": "user", "content": "Name a color."}], "logprobs": True,
        "top_logprobs": 2, "max_tokens": 8, "temperature": 0, "options": {"repeat_penalty": 1.0}})
    assert status == 200, answer
    choice = answer["choices"][0]
    assert len(choice["logprobs"]["content"]) == answer["usage"]["completion_tokens"] == 8
    check_logprobs(choice["logprobs"]["content"], choice["message"]["content"], 2)
