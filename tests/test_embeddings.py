"""Embeddings on /api/embed, /api/embeddings and /v1/embeddings: inputs of any length (cut to the
context or refused), `dimensions`, and what a failure leaves in the log. End to end on the session
daemon's real llama-cpp-python runners, the routes' checks in-process.

Gemma 3 270M computes its output layer (262,144 entries) for every token it embeds (see
daemon/backends/llama_embed.py): a few seconds per thousand tokens here. So the full grid of lengths,
truncate and routes runs on a tiny GGUF through the same runner code, and Gemma, with its real
tokenizer, shows the lengths that matter: more tokens than llama.cpp's default batch, an input cut to
the context, one refused."""

from __future__ import annotations

import base64
import logging
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import ollama
import openai
import pytest
from llama_cpp import Llama

from tests.support.cores import worker_threads
from tests.support.daemons import Daemon
from tests.support.inprocess import InProcess
from tests.support.polling import wait_until
from r1.daemon.scheduler.runner_client import RunnerError
from tests.support.scripted import ScriptedRunner
from tests.support.tinymodels import write_tiny_bert, write_tiny_gguf

# One Gemma embedding instance for the module, at a context of 768 tokens: more than llama.cpp's default
# batch of 512, which is all llama-cpp-python's own embed takes at once. Its num_thread option (the
# worker's share of the cores, from conftest) sets it apart from other tests' Gemma runners, one of
# which would serve it otherwise (a runner with a larger num_ctx serves smaller ones); it unloads a
# little after the module.
GEMMA = "gemma-embed"
CONTEXT = 768
WIDTH = 640  # Gemma 3 270M's embedding_length
KEEP = "20s"
# A random tiny GGUF with a context of 1,024 that calls itself nomic-embed-text v1.5 (general.name):
# r1 takes it for a Matryoshka model, which may shorten its vectors.
TINY = "tiny-embed"
TINY_CONTEXT = 1024
TINY_WIDTH = 64
# A random tiny BERT (non-causal, WordPiece, [CLS] ... [SEP]) with a trained context of 64 tokens.
BERT = "tiny-bert"
ROUTES = ("/api/embed", "/api/embeddings", "/v1/embeddings")
# Words Gemma's tokenizer takes as one token each, with their leading space.
WORDS = tuple(" " + word for word in ["river", "stone", "light", "paper", "window", "garden", "music", "silver",
                                       "orange", "winter", "market", "forest", "letter", "bridge", "summer",
                                       "doctor", "pencil", "island", "valley", "dinner"])


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def same_direction(a: list[float], b: list[float]) -> bool:
    """Vectors of one text embedded alone and beside others. llama.cpp's sums round differently for
    a sequence that is not the first of a batch (cosine 0.999 with Gemma, llama-cpp-python's own
    embed too); "cats purr" against "cats purr." is 0.955."""
    return sum(x * y for x, y in zip(a, b)) > 0.998


def post(daemon: Daemon, route: str, model: str, text: str, **fields: Any) -> tuple[int, Any]:
    """One text to embed, in the route's own shape."""
    key = "prompt" if route == "/api/embeddings" else "input"
    return daemon.request("POST", route, {"model": model, key: text, "keep_alive": KEEP, **fields})


def vectors_of(route: str, answer: dict[str, Any]) -> list[list[float]]:
    if route == "/api/embeddings":
        return [answer["embedding"]]
    if route == "/v1/embeddings":
        return [item["embedding"] for item in answer["data"]]
    return answer["embeddings"]


def message_of(answer: dict[str, Any]) -> str:
    error = answer["error"]
    return error["message"] if isinstance(error, dict) else error


def sized_texts(path: Path, sizes: tuple[int, ...], pieces: tuple[str, ...]) -> dict[int, str]:
    """Texts of exactly these many tokens (BOS included) for the model at `path`, counted by its own
    tokenizer; each starts as every longer one does. Each piece must be one token."""
    vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        overhead = len(vocab.tokenize(pieces[0].encode())) - 1  # BOS, and a space the tokenizer may add first
        made = {n: "".join(pieces[i % len(pieces)] for i in range(n - overhead)) for n in sizes}
        assert {n: len(vocab.tokenize(text.encode())) for n, text in made.items()} == {n: n for n in made}
    finally:
        vocab.close()
    return made


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("embed") / "tiny.gguf", name="nomic-embed-text-v1.5",
                           context_length=TINY_CONTEXT)


@pytest.fixture(scope="module")
def models(gemma_daemon: Daemon, tiny_path: Path) -> Iterator[Daemon]:
    status, answer = gemma_daemon.request("POST", "/api/create", {
        "model": GEMMA, "from": "gemma", "parameters": {"num_ctx": CONTEXT, "num_thread": worker_threads()},
        "stream": False})
    assert status == 200, answer
    gemma_daemon.cli("import", str(tiny_path), "--name", TINY)
    gemma_daemon.cli("import", str(write_tiny_bert(tiny_path.with_name("bert.gguf"))), "--name", BERT)
    yield gemma_daemon
    for name in (GEMMA, TINY, BERT):
        gemma_daemon.request("DELETE", "/api/delete", {"model": name})


@pytest.fixture(scope="module")
def texts(gemma_path: Path) -> dict[int, str]:
    return sized_texts(gemma_path, (300, CONTEXT, 5000), WORDS)


@pytest.fixture(scope="module")
def tiny_texts(tiny_path: Path) -> dict[int, str]:
    return sized_texts(tiny_path, (300, 700, 5000), tuple("abcdefghijklmnopqrstuvwxyz"))


# --- inputs of any length, on real runners ------------------------------------------------------


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("size", [300, 700, 5000])
@pytest.mark.parametrize("route", ROUTES)
def test_inputs_up_to_the_context_embed_and_longer_ones_are_cut_or_refused(
        models: Daemon, tiny_texts: dict[int, str], route: str, size: int, truncate: bool) -> None:
    logged = len(models.log().splitlines())
    status, answer = post(models, route, TINY, tiny_texts[size], truncate=truncate)
    if size > TINY_CONTEXT and not truncate:
        assert status == 400, answer
        reason = f"the input is {size} tokens, more than the model's context of {TINY_CONTEXT} tokens"
        assert message_of(answer).startswith(reason)
        # Said in the daemon's log as it happened, with the route and the model.
        assert any(f" WARNING r1.daemon.embedding: {route}: {TINY}:latest could not embed 1 input(s): {reason}" in line
                   for line in models.log().splitlines()[logged:])
        return
    assert status == 200, answer
    [vector] = vectors_of(route, answer)
    assert len(vector) == TINY_WIDTH and math.isclose(norm(vector), 1.0, rel_tol=1e-4)
    counted = min(size, TINY_CONTEXT)  # the tokens evaluated: after the cut
    if route == "/api/embed":
        assert answer["prompt_eval_count"] == counted
    elif route == "/v1/embeddings":
        assert answer["usage"] == {"prompt_tokens": counted, "total_tokens": counted}


def test_a_runner_with_a_larger_context_holds_a_request_to_its_own(models: Daemon, tiny_texts: dict[int, str]) -> None:
    assert post(models, "/api/embed", TINY, "a")[0] == 200  # its runner, at a context of 1,024
    status, answer = post(models, "/api/embed", TINY, tiny_texts[700], options={"num_ctx": 512})
    assert status == 200 and answer["prompt_eval_count"] == 512, answer
    status, answer = post(models, "/api/embed", TINY, tiny_texts[700], truncate=False, options={"num_ctx": 512})
    assert status == 400 and "more than the model's context of 512 tokens" in answer["error"]
    rows = [m for m in models.request("GET", "/api/ps")[1]["models"] if m["name"] == f"{TINY}:latest"]
    assert [m["context_length"] for m in rows] == [TINY_CONTEXT]  # the one runner served both


def test_gemma_embeds_its_whole_context_and_an_input_cut_to_it_is_its_first_tokens(
        models: Daemon, texts: dict[int, str]) -> None:
    # 768 tokens, more than llama.cpp's default batch of 512, which once refused them.
    status, head = post(models, "/api/embed", GEMMA, texts[CONTEXT], truncate=False)
    assert status == 200, head
    [vector] = head["embeddings"]
    assert len(vector) == WIDTH and math.isclose(norm(vector), 1.0, rel_tol=1e-4)
    status, cut = post(models, "/v1/embeddings", GEMMA, texts[5000])  # as Ollama's OpenAI layer: cut
    assert status == 200, cut
    assert cut["usage"]["prompt_tokens"] == head["prompt_eval_count"] == CONTEXT  # the same first 768, BOS first
    assert cut["data"][0]["embedding"] == pytest.approx(vector, abs=1e-5)
    status, other = post(models, "/api/embed", GEMMA, "cats purr")
    assert not same_direction(other["embeddings"][0], vector)

    # Loaded by an embedding request, the runner's estimate has the embedding context on top.
    def loaded() -> dict[str, Any]:
        return next(m for m in models.request("GET", "/api/ps")[1]["models"] if m["name"] == f"{GEMMA}:latest")

    shown = models.request("POST", "/api/show", {"model": GEMMA})[1]["memory"]
    assert shown["num_ctx"] == CONTEXT
    estimate = loaded()["estimate"]
    assert estimate > shown["estimate"] + 500 * 2**20
    # After a whole context every buffer is in use; the scheduler measures the runner after a request.
    wait_until(lambda: loaded()["size"] > 0.75 * estimate)
    assert loaded()["size"] < 1.25 * estimate


def test_an_embedding_model_keeps_its_closing_token_when_an_input_is_cut(models: Daemon) -> None:
    long = "abcdefghij " * 20  # [CLS], 10 tokens a word, [SEP]: 202
    head = "abcdefghij " * 6 + "ab"  # [CLS], the same first 62, [SEP]: 64, its whole context
    status, cut = post(models, "/api/embed", BERT, long)
    assert status == 200, cut
    status, same = post(models, "/api/embed", BERT, head)
    assert cut["prompt_eval_count"] == same["prompt_eval_count"] == 64
    assert cut["embeddings"][0] == pytest.approx(same["embeddings"][0], abs=1e-6)
    status, answer = post(models, "/api/embed", BERT, long, truncate=False)
    # Its trained context is the limit: no num_ctx would make room.
    assert status == 400 and answer["error"] == ("the input is 202 tokens, more than the model's context of 64 tokens; "
                                                 "shorten it, or leave truncate on to cut it to the context")


def test_several_inputs_in_one_request_each_get_their_vector(models: Daemon, texts: dict[int, str]) -> None:
    status, together = models.request("POST", "/api/embed", {"model": GEMMA, "input": [texts[300], "cats purr"],
                                                             "keep_alive": KEEP})
    assert status == 200, together
    status, alone = post(models, "/api/embed", GEMMA, "cats purr")
    assert same_direction(together["embeddings"][1], alone["embeddings"][0])
    assert together["prompt_eval_count"] == 300 + alone["prompt_eval_count"]
    # Refused as a whole when one of them is too long, naming which.
    status, answer = models.request("POST", "/api/embed", {"model": GEMMA, "input": ["cats purr", texts[5000]],
                                                           "truncate": False, "keep_alive": KEEP})
    assert status == 400 and answer["error"].startswith("input 1 is 5000 tokens"), answer


def test_the_official_ollama_client_gets_a_400_for_a_long_input_not_to_be_cut(
        models: Daemon, texts: dict[int, str]) -> None:
    client = ollama.Client(host="http://localhost", transport=httpx.HTTPTransport(uds=str(models.socket)))
    with pytest.raises(ollama.ResponseError) as caught:
        client.embed(GEMMA, texts[5000], truncate=False, keep_alive=KEEP)
    assert caught.value.status_code == 400
    assert "5000 tokens" in caught.value.error and f"context of {CONTEXT} tokens" in caught.value.error
    single = client.embeddings(GEMMA, "the sky is blue", keep_alive=KEEP)
    listed = client.embed(GEMMA, ["the sky is blue", "cats purr"], keep_alive=KEEP)
    assert same_direction(single.embedding, listed.embeddings[0])
    assert listed.embeddings[0] != listed.embeddings[1]


def test_the_openai_client_gets_floats_base64_and_a_400(models: Daemon, texts: dict[int, str]) -> None:
    http = httpx2.Client(transport=httpx2.HTTPTransport(uds=str(models.socket)), timeout=120)
    client = openai.OpenAI(base_url="http://localhost/v1", api_key="r1", http_client=http, max_retries=0)
    keep = {"keep_alive": KEEP}
    try:
        inputs = ["the sky is blue", "cats purr"]
        floats = client.embeddings.create(model=GEMMA, input=inputs, encoding_format="float", extra_body=keep)
        assert floats.object == "list" and floats.model == GEMMA
        assert [d.index for d in floats.data] == [0, 1] and all(d.object == "embedding" for d in floats.data)
        assert all(len(d.embedding) == WIDTH and math.isclose(norm(d.embedding), 1.0, rel_tol=1e-4) for d in floats.data)
        assert floats.usage.prompt_tokens > 4 and floats.usage.total_tokens == floats.usage.prompt_tokens
        decoded = client.embeddings.create(model=GEMMA, input=inputs, extra_body=keep)  # asks for base64, decodes it
        for a, b in zip(decoded.data, floats.data):
            assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
        status, raw = post(models, "/v1/embeddings", GEMMA, inputs[0], encoding_format="base64")
        packed = base64.b64decode(raw["data"][0]["embedding"])
        assert same_direction(list(struct.unpack(f"<{WIDTH}f", packed)), floats.data[0].embedding)
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model=GEMMA, input=texts[5000], extra_body={**keep, "truncate": False})
        assert caught.value.body["type"] == "invalid_request_error" and "5000 tokens" in caught.value.body["message"]
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model=GEMMA, input="hi", dimensions=256, extra_body=keep)
        assert "Matryoshka" in caught.value.body["message"]
    finally:
        http.close()


# --- dimensions, on the real runner --------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_a_matryoshka_model_shortens_its_vectors(models: Daemon, route: str) -> None:
    status, whole = post(models, route, TINY, "the sky is blue")
    assert status == 200, whole
    [full] = vectors_of(route, whole)
    assert len(full) == TINY_WIDTH
    status, answer = post(models, route, TINY, "the sky is blue", dimensions=16)
    assert status == 200, answer
    [short] = vectors_of(route, answer)
    scale = norm(full[:16])
    assert short == pytest.approx([x / scale for x in full[:16]], abs=1e-6) and math.isclose(norm(short), 1.0)
    status, answer = post(models, route, TINY, "the sky is blue", dimensions=64)
    assert status == 200 and vectors_of(route, answer)[0] == pytest.approx(full, abs=1e-6)
    status, answer = post(models, route, TINY, "the sky is blue", dimensions=65)
    assert status == 400 and "vectors of 64 dimensions" in message_of(answer), answer


@pytest.mark.parametrize("route", ROUTES)
def test_a_model_not_trained_for_it_refuses_dimensions_but_its_own_width(models: Daemon, route: str) -> None:
    status, answer = post(models, route, GEMMA, "the sky is blue", dimensions=256)
    assert status == 400, answer
    assert message_of(answer).startswith(f"{GEMMA}:latest cannot give vectors of 256 dimensions")
    status, answer = post(models, route, GEMMA, "the sky is blue", dimensions=WIDTH)
    assert status == 200 and len(vectors_of(route, answer)[0]) == WIDTH


# --- the routes' checks and the failure log, in-process -------------------------------------------


def request_body(route: str, model: str, text: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"model": model, ("prompt" if route == "/api/embeddings" else "input"): text, **fields}


@pytest.mark.parametrize("route", ROUTES)
async def test_truncate_reaches_the_runner_and_is_on_by_default(api: InProcess, route: str) -> None:
    await api.add_model("m")
    for fields, expected in (({}, True), ({"truncate": True}, True), ({"truncate": False}, False)):
        response = await api.client.post(route, json=request_body(route, "m", **fields))
        assert response.status == 200, await response.text()
        assert api.runners.requests[-1] == {"op": "embed", "input": ["hello"], "truncate": expected, "num_ctx": 256}


@pytest.mark.parametrize("route", ROUTES)
async def test_bad_truncate_and_dimensions_are_400s_before_any_load(api: InProcess, route: str) -> None:
    await api.add_model("m")
    for fields, words in (({"truncate": "no"}, "'truncate' must be true or false"),
                          ({"dimensions": 0}, "'dimensions' must be a positive whole number, not 0"),
                          ({"dimensions": -8}, "not -8"), ({"dimensions": 2.5}, "not 2.5"),
                          ({"dimensions": True}, "not true"), ({"dimensions": "8"}, "not \"8\""),
                          ({"dimensions": 32}, "m:latest cannot give vectors of 32 dimensions")):
        response = await api.client.post(route, json=request_body(route, "m", **fields))
        assert response.status == 400
        assert words in message_of(await response.json())
    assert api.runners.started == []


async def import_named(api: InProcess, model: str, general_name: str) -> None:
    """A tiny GGUF whose general.name is `general_name`, in the store as `model`."""
    path = write_tiny_gguf(api.tmp / f"{general_name}.gguf", name=general_name)
    response = await api.client.post("/api/import", json={"path": str(path), "model": model, "stream": False})
    assert response.status == 200, await response.text()


@pytest.mark.parametrize("name, general_name", [
    ("nomic-embed-text", "nomic-bert"),  # Ollama's library name for v1.5
    ("hf.co/nomic-ai/nomic-embed-text-v1.5-GGUF:Q8_0", "tiny"),
    ("my-embedder", "Qwen3 Embedding 0.6B"),
    ("e", "embeddinggemma-300m"),
])
async def test_matryoshka_models_are_known_by_their_name_or_their_files(
        api: InProcess, name: str, general_name: str) -> None:
    await import_named(api, name, general_name)
    response = await api.client.post("/api/embed", json={"model": name, "input": "hello", "dimensions": 1})
    assert response.status == 200, await response.text()
    assert (await response.json())["embeddings"] == [[1.0]]  # the scripted [1, 0], shortened


async def test_a_model_of_the_wrong_version_is_not_taken_for_a_matryoshka_one(api: InProcess) -> None:
    await import_named(api, "hf.co/nomic-ai/nomic-embed-text-v1-GGUF:Q8_0", "nomic-embed-text-v1")
    response = await api.client.post("/api/embed", json={"model": "hf.co/nomic-ai/nomic-embed-text-v1-GGUF:Q8_0",
                                                          "input": "hello", "dimensions": 1})
    assert response.status == 400 and "Matryoshka" in message_of(await response.json())


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("status, level", [(400, "WARNING"), (500, "ERROR")])
async def test_a_runner_failure_is_logged_with_route_and_model_and_reaches_the_client(
        api: InProcess, route: str, status: int, level: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    await api.add_model("m")
    reason = "the input is 9000 tokens, more than the model's context of 4096 tokens"

    async def failing(self: ScriptedRunner, op: str, **fields: Any) -> dict[str, Any]:
        raise RunnerError(reason, status)

    monkeypatch.setattr(ScriptedRunner, "call", failing)
    with caplog.at_level(logging.WARNING, logger="r1.daemon.embedding"):
        response = await api.client.post(route, json=request_body(route, "m"))
    assert response.status == status
    assert message_of(await response.json()) == reason
    [record] = [r for r in caplog.records if r.name == "r1.daemon.embedding"]
    assert record.levelname == level
    assert record.getMessage() == f"{route}: m:latest could not embed 1 input(s): {reason}"
