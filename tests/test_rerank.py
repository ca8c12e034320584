"""Reranking through /api/rerank and /v1/rerank on a real daemon and real llama.cpp runners, with
tiny random-weight rerankers (tests/support/tinyrank.py): one with llama-server's pair of special tokens,
one with a rerank template as Qwen3-Reranker has. Each score must be the one llama-cpp-python
computes in this process for the same pair, so the plumbing (pair, batch, score, sort) is real."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cohere
import httpx
import pytest

from tests.support.daemons import Daemon
from tests.support.polling import wait_until
from tests.support.tinymodels import write_tiny_bert
from tests.support.tinyrank import CLS, SEP, InProcessScorer, write_tiny_reranker

RANKER, TEMPLATED, BERT = "tiny-ranker", "tiny-ranker-template", "tiny-bert-rank-test"
SLOW = "slow-ranker"  # wider and deeper, at a context of 256: a pair takes a noticeable decode
CHAT = "tiny"  # the session daemon's random ChatML model: a generative one
TEMPLATE = "[CLS]query {query} [SEP]document {document}[SEP]"
KEEP = "20s"
QUERY = "where is the cat"
DOCUMENTS = ["the cat sat on the mat", "a dog ran", "cats sleep all day", "xyz", "the cat is in the garden"]
ROUTES = ("/api/rerank", "/v1/rerank")


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rerank")
    return {RANKER: write_tiny_reranker(root / "ranker.gguf"),
            TEMPLATED: write_tiny_reranker(root / "templated.gguf", template=TEMPLATE, seed=1)}


@pytest.fixture(scope="module")
def models(gemma_daemon: Daemon, paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    for name, path in paths.items():
        gemma_daemon.cli("import", str(path), "--name", name)
    made = tmp_path_factory.mktemp("more")
    gemma_daemon.cli("import", str(write_tiny_bert(made / "bert.gguf")), "--name", BERT)
    slow = write_tiny_reranker(made / "slow.gguf", context_length=256, width=256, n_layers=4, seed=2)
    gemma_daemon.cli("import", str(slow), "--name", SLOW)
    yield gemma_daemon
    for name in (*paths, BERT, SLOW):
        gemma_daemon.request("DELETE", "/api/delete", {"model": name})


@pytest.fixture(scope="module")
def scorers(paths: dict[str, Path]) -> Iterator[dict[str, InProcessScorer]]:
    made = {name: InProcessScorer(path) for name, path in paths.items()}
    yield made
    for scorer in made.values():
        scorer.close()


def post(daemon: Daemon, route: str, **body: Any) -> tuple[int, Any]:
    return daemon.request("POST", route, {"keep_alive": KEEP, **body})


def message_of(answer: dict[str, Any]) -> str:
    error = answer["error"]
    return error["message"] if isinstance(error, dict) else error


# --- what the model is --------------------------------------------------------------------------


def test_a_rank_pooling_gguf_has_the_rerank_capability_and_nothing_else(models: Daemon) -> None:
    for name in (RANKER, TEMPLATED):
        status, shown = models.request("POST", "/api/show", {"model": name})
        assert status == 200 and shown["capabilities"] == ["rerank"], shown.get("capabilities")
    status, tags = models.request("GET", "/api/tags")
    listed = {m["name"].removesuffix(":latest"): m["capabilities"] for m in tags["models"]}
    assert listed[RANKER] == ["rerank"] and listed[BERT] == ["embedding"]


# --- both routes, scores as llama.cpp gives them -------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_both_routes_sort_the_documents_by_the_score_llama_cpp_gives(
        models: Daemon, scorers: dict[str, InProcessScorer], route: str) -> None:
    scorer = scorers[RANKER]
    pairs = [scorer.pair(QUERY, document) for document in DOCUMENTS]
    expected = [scorer.score(pair) for pair in pairs]
    status, answer = post(models, route, model=RANKER, query=QUERY, documents=DOCUMENTS)
    assert status == 200, answer
    results = answer["results"]
    assert sorted(r["index"] for r in results) == list(range(len(DOCUMENTS)))
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    for result in results:  # the pairs are decoded together: llama.cpp's sums round a little differently
        assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-5), result
        assert "document" not in result
    tokens = sum(map(len, pairs))
    if route == "/v1/rerank":
        assert answer["object"] == "list" and answer["model"] == RANKER
        assert answer["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    else:
        assert answer["model"] == f"{RANKER}:latest" and answer["prompt_eval_count"] == tokens
        assert answer["total_duration"] > 0 and "load_duration" in answer


def test_a_rerank_template_builds_the_pair(models: Daemon, scorers: dict[str, InProcessScorer]) -> None:
    """Qwen3-Reranker's way: the GGUF's tokenizer.chat_template.rerank, its special tokens parsed."""
    scorer = scorers[TEMPLATED]
    filled = [TEMPLATE.replace("{query}", QUERY).replace("{document}", d) for d in DOCUMENTS[:2]]
    pairs = [scorer.words(text, special=True) for text in filled]
    assert pairs[0][0] == CLS and pairs[0].count(SEP) == 2  # the template's own special tokens, not text
    status, answer = post(models, "/v1/rerank", model=TEMPLATED, query=QUERY, documents=DOCUMENTS[:2])
    assert status == 200, answer
    by_index = {r["index"]: r["relevance_score"] for r in answer["results"]}
    assert by_index == {i: pytest.approx(scorer.score(pair), abs=1e-5) for i, pair in enumerate(pairs)}
    assert answer["usage"]["prompt_tokens"] == sum(map(len, pairs))


@pytest.mark.parametrize("route", ROUTES)
def test_top_n_and_return_documents(models: Daemon, route: str) -> None:
    status, everything = post(models, route, model=RANKER, query=QUERY, documents=DOCUMENTS)
    assert status == 200, everything
    objects = [{"text": d} for d in DOCUMENTS]  # Cohere's and Jina's other spelling of a document
    status, answer = post(models, route, model=RANKER, query=QUERY, documents=objects, top_n=2, return_documents=True)
    assert status == 200, answer
    best = everything["results"][:2]
    assert [r["index"] for r in answer["results"]] == [r["index"] for r in best]
    assert [r["document"] for r in answer["results"]] == [{"text": DOCUMENTS[r["index"]]} for r in best]
    status, answer = post(models, route, model=RANKER, query=QUERY, documents=DOCUMENTS, top_n=50)
    assert status == 200 and len(answer["results"]) == len(DOCUMENTS)


def test_a_pair_longer_than_the_context_loses_the_end_of_its_document(
        models: Daemon, scorers: dict[str, InProcessScorer]) -> None:
    """The embed routes' rule: cut to the context (64 tokens here) when truncate is on, the closing
    [SEP] kept; refused, naming both lengths, when it is off."""
    scorer = scorers[RANKER]
    long_document = "abc " * 40  # 80 tokens
    whole = scorer.pair(QUERY, long_document)
    cut = whole[:63] + [SEP]
    status, answer = post(models, "/api/rerank", model=RANKER, query=QUERY, documents=[long_document, "the cat"])
    assert status == 200, answer
    by_index = {r["index"]: r["relevance_score"] for r in answer["results"]}
    assert by_index[0] == pytest.approx(scorer.score(cut), abs=1e-5)
    assert answer["prompt_eval_count"] == 64 + len(scorer.pair(QUERY, "the cat"))
    for route in ROUTES:
        status, answer = post(models, route, model=RANKER, query=QUERY, documents=["the cat", long_document],
                              truncate=False)
        assert status == 400, answer
        assert f"document 1 is {len(whole)} tokens" in message_of(answer) and "context of 64" in message_of(answer)


# --- models that do not rerank, and rerankers asked for something else ----------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("model", "what"), [(CHAT, "/api/chat"), (BERT, "/api/embed")])
def test_a_model_without_rank_pooling_is_refused_naming_what_to_use(
        models: Daemon, route: str, model: str, what: str) -> None:
    status, answer = post(models, route, model=model, query=QUERY, documents=DOCUMENTS)
    assert status == 400, answer
    message = message_of(answer)
    assert f'"{model}" does not support rerank' in message and what in message and "reranker" in message
    assert isinstance(answer["error"], dict) == (route == "/v1/rerank")  # each dialect's own error shape


def test_a_reranker_refuses_to_embed_and_to_generate(models: Daemon) -> None:
    status, answer = post(models, "/api/embed", model=RANKER, input="the cat")
    assert status == 400 and "this model is a reranker" in message_of(answer), answer
    status, answer = post(models, "/api/generate", model=RANKER, prompt="hi", stream=False)
    assert status == 400 and "it is a reranker" in message_of(answer) and "/v1/rerank" in message_of(answer), answer


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("body", "status", "words"), [
    ({"query": QUERY, "documents": DOCUMENTS}, 400, "field 'model' is required"),
    ({"model": RANKER, "documents": DOCUMENTS}, 400, "field 'query' is required"),
    ({"model": RANKER, "query": "", "documents": DOCUMENTS}, 400, "field 'query' is required"),
    ({"model": RANKER, "query": QUERY}, 400, "field 'documents' is required"),
    ({"model": RANKER, "query": QUERY, "documents": []}, 400, "must be a non-empty list"),
    ({"model": RANKER, "query": QUERY, "documents": "the cat"}, 400, "must be a non-empty list"),
    ({"model": RANKER, "query": QUERY, "documents": ["a", 7]}, 400, "documents[1] must be a string"),
    ({"model": RANKER, "query": QUERY, "documents": [{"title": "a"}]}, 400, "documents[0] must be a string"),
    ({"model": RANKER, "query": QUERY, "documents": DOCUMENTS, "top_n": 0}, 400, "'top_n' must be a positive whole number"),
    ({"model": RANKER, "query": QUERY, "documents": DOCUMENTS, "top_n": True}, 400, "'top_n' must be"),
    ({"model": RANKER, "query": QUERY, "documents": ["a"] * 1001}, 400, "one request ranks at most 1000"),
    ({"model": RANKER, "query": QUERY, "documents": DOCUMENTS, "return_documents": "yes"}, 400,
     "'return_documents' must be true or false"),
    ({"model": "no-such-model", "query": QUERY, "documents": DOCUMENTS}, 404, "not found"),
])
def test_bad_requests_get_clear_errors_in_the_dialects_shape(
        models: Daemon, route: str, body: dict[str, Any], status: int, words: str) -> None:
    got, answer = models.request("POST", route, body)
    assert got == status and words in message_of(answer), answer
    assert isinstance(answer["error"], dict) == (route == "/v1/rerank")


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_that_is_not_json_is_a_400(models: Daemon, route: str) -> None:
    status, answer = models.request("POST", route, raw=b'{"model": "tiny-ranker", "query": ')
    assert status == 400 and "invalid JSON" in message_of(answer), answer


# --- a client -------------------------------------------------------------------------------------


def test_cohere_client_reranks(models: Daemon, scorers: dict[str, InProcessScorer]) -> None:
    """Cohere's official SDK (v1 rerank: POST {base_url}/v1/rerank) reads r1's answer."""
    scorer = scorers[RANKER]
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(models.socket)), timeout=120) as http:
        client = cohere.Client(api_key="r1", base_url="http://localhost", httpx_client=http)
        answer = client.rerank(model=RANKER, query=QUERY, documents=DOCUMENTS, top_n=3, return_documents=True)
    assert len(answer.results) == 3
    scores = [r.relevance_score for r in answer.results]
    assert scores == sorted(scores, reverse=True)
    for result in answer.results:
        assert result.document.text == DOCUMENTS[result.index]
        assert result.relevance_score == pytest.approx(scorer.score(scorer.pair(QUERY, DOCUMENTS[result.index])),
                                                       abs=1e-5)


# --- a client that leaves -----------------------------------------------------------------------------


def scoring_s(daemon: Daemon, documents: list[str]) -> float:
    started = time.monotonic()
    status, answer = post(daemon, "/api/rerank", model=SLOW, query="ab", documents=documents)
    assert status == 200, answer
    return time.monotonic() - started


def test_a_client_that_leaves_stops_the_scoring_of_its_documents(models: Daemon) -> None:
    """As with embeddings: the runner drops the rest of the work between two decodes, so the next client
    waits about one decode, not for all the documents of one that hung up (unfixed: 40 decodes)."""
    document = "abc " * 120  # with the query, the whole context of 256: one pair a decode
    scoring_s(models, ["ab"])  # loaded
    one = scoring_s(models, [document])
    mark = len(models.log())
    body = json.dumps({"model": SLOW, "query": "ab", "documents": [document] * 40, "keep_alive": KEEP}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(models.socket))
        sock.sendall(f"POST /api/rerank HTTP/1.1\r\nHost: r1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(2 * one + 0.5)  # at work on its documents
    waited = scoring_s(models, ["abc"])
    assert waited < 3 * one + 1.0, (waited, one)
    wait_until(lambda: "POST /api/rerank 499" in models.log()[mark:], timeout=5)
    assert re.search(r"POST /api/rerank 499 .*\(client went away\)", models.log()[mark:])
