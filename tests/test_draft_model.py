"""A Modelfile's DRAFT through the real `r1 create` and daemon: a draft model of the same family makes the same
greedy answers with its guesses counted, is shown, is counted in the budget, outlives its own name, and one
that tokenizes otherwise is refused before anything is stored.

Gemma 3 270M drafts for itself here (the only GGUF family with two models on this machine is itself): its
guesses are its answers, so nearly all are kept. benchmarks/speculative.py --draft measures the speed-up of
a cheaper draft (Gemma Q4_K_M for Gemma in F32).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.daemons import Daemon
from r1.cli.modelfile import parse

FRUIT = "apples, bananas, cherries, dates, elderberries, figs, grapes, honeydew, kiwis, lemons, mangoes, nectarines"
PROMPTS = (f"Repeat this list exactly.\nList: {FRUIT}.\nRepeated list: apples,", "The history of the printing press")


def generate(daemon: Daemon, model: str, prompt: str) -> dict:
    status, body = daemon.request("POST", "/api/generate", {
        "model": model, "prompt": prompt, "raw": True, "stream": False, "keep_alive": "1m",
        "options": {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 48, "num_ctx": 1024}})
    assert status == 200, body
    return body


@pytest.fixture(scope="module")
def drafted(gemma_daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    """gemma-drafted: Gemma with a copy of itself under another name as its DRAFT, made from a Modelfile."""
    gemma_daemon.cli("cp", "gemma", "gemma-draft-copy")
    folder = tmp_path_factory.mktemp("drafted")
    (folder / "Modelfile").write_text("FROM gemma\nDRAFT gemma-draft-copy\n")
    gemma_daemon.cli("create", "gemma-drafted", "-f", str(folder / "Modelfile"))
    return "gemma-drafted"


@pytest.mark.unit
def test_a_modelfile_draft_line_goes_into_the_create_body() -> None:
    assert parse("FROM qwen3:8b\nDRAFT qwen3:0.6b\n", base=Path("/")) == {"from": "qwen3:8b", "draft": "qwen3:0.6b"}


def test_a_draft_model_gives_the_same_greedy_answers_and_counts_its_guesses(gemma_daemon: Daemon,
                                                                            drafted: str) -> None:
    for prompt in PROMPTS:
        plain, guessed = generate(gemma_daemon, "gemma", prompt), generate(gemma_daemon, drafted, prompt)
        assert guessed["response"] == plain["response"] and guessed["eval_count"] == plain["eval_count"] == 48
        # Gemma guessing for itself: what it is sure of is what it says.
        assert guessed["draft_tokens"] > 0 and guessed["draft_accepted"] >= 0.9 * guessed["draft_tokens"], guessed
    status, text = gemma_daemon.request("GET", "/metrics")
    kept = re.search(r'^r1_draft_accepted_tokens_total\{model="gemma-drafted:latest"\} (\d+)$', text, re.M)
    assert status == 200 and kept and int(kept[1]) > 0


def test_show_names_the_draft_and_the_budget_counts_it(gemma_daemon: Daemon, drafted: str) -> None:
    status, plain = gemma_daemon.request("POST", "/api/show", {"model": "gemma"})
    assert status == 200, plain
    status, shown = gemma_daemon.request("POST", "/api/show", {"model": drafted})
    assert status == 200, shown
    assert "FROM gemma-drafted:latest\nDRAFT gemma-draft-copy:latest\n" in shown["modelfile"]
    drafts = [f for f in shown["files"] if f.get("kind") == "draft"]
    weights = next(f for f in plain["files"] if f["path"].endswith(".gguf"))
    assert [(f["digest"], f["size"]) for f in drafts] == [(weights["digest"], weights["size"])]
    memory, alone = shown["memory"], plain["memory"]
    # The draft holds as many slots of as many cells as the model: about the model's estimate again.
    assert memory["weights"] == alone["weights"] and memory["draft"] >= alone["weights"] + alone["kv_cache"]
    assert memory["estimate"] == alone["estimate"] + memory["draft"]
    listed = gemma_daemon.cli("show", drafted).stdout
    assert re.search(r"draft/\S+\.gguf .* draft model", listed), listed


def test_the_draft_outlives_its_own_name(gemma_daemon: Daemon, drafted: str) -> None:
    before = generate(gemma_daemon, drafted, PROMPTS[0])
    gemma_daemon.request("POST", "/api/generate", {"model": drafted, "keep_alive": 0})  # unload: reload from disk
    gemma_daemon.cli("rm", "gemma-draft-copy")
    after = generate(gemma_daemon, drafted, PROMPTS[0])
    assert after["response"] == before["response"] and after["draft_accepted"] > 0


def test_a_draft_of_another_family_or_an_unknown_one_is_refused(gemma_daemon: Daemon) -> None:
    status, body = gemma_daemon.request("POST", "/api/create", {
        "model": "gemma-smol", "from": "gemma", "draft": "smollm2:135m", "stream": False})
    assert status == 400 and "tokenizes text differently" in body["error"], body
    status, body = gemma_daemon.request("POST", "/api/create", {
        "model": "gemma-nodraft", "from": "gemma", "draft": "no-such-model", "stream": False})
    assert status == 404 and "no-such-model" in body["error"], body
    status, body = gemma_daemon.request("POST", "/api/create", {
        "model": "gemma-typed", "from": "gemma", "draft": 3, "stream": False})
    assert status == 400 and "'draft'" in body["error"], body
    status, tags = gemma_daemon.request("GET", "/api/tags")
    assert not {"gemma-smol:latest", "gemma-nodraft:latest", "gemma-typed:latest"} & {m["name"] for m in tags["models"]}
