"""Speculative decoding in the GGUF runner, by prompt lookup and by a draft model: the same answers, fewer
steps, limits exact.

Real runners on Gemma 3 270M, one with drafting off (lookup_drafts 0), one drafting by prompt lookup and one
with a draft model (Gemma itself: the same vocabulary, and guesses that are mostly right), asked the same
things: an answer that repeats its prompt (a list, code), one longer than Gemma's 512-token sliding window,
one that repeats nothing. The draft counts prove drafts were made and kept; the texts prove they changed
nothing. (Same on these quantized weights: tests/test_draft_model.py says where numbers may differ.)
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.cores import own_runner_load
from tests.support.daemons import Daemon, private_daemon
from r1.daemon.scheduler.runner_client import Runner

GREEDY = {"temperature": 0, "repeat_penalty": 1.0}
FRUIT = "apples, bananas, cherries, dates, elderberries, figs, grapes, honeydew, kiwis, lemons, mangoes, nectarines"
LIST = f"Repeat this list exactly.\nList: {FRUIT}.\nRepeated list: apples,"
CODE = ("def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n"
        "# The same functions again, unchanged:\ndef add(a, b):\n")
# Past the sliding window: the cells of rejected drafts go from both of Gemma's caches.
LONG = "Copy these lines.\n" + "\n".join(f"{n}. {FRUIT}" for n in range(1, 19)) + "\nCopy:\n1. apples,"
PROSE = "The capital of France is"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runners(gemma_path: Path) -> AsyncIterator[dict[int | str, Runner]]:
    """Runners of Gemma, 2 slots of 1024 tokens each: drafting off (0), by prompt lookup (the default, 6), and
    with Gemma as its own draft model ("draft"), beside a twin with drafting off ("plain"). Each drafting runner
    has its own plain twin, asked the same things in the same order: a prompt asked again reuses its cells and
    evaluates its last token alone, whose logits may differ in the last bits from the same token evaluated in
    a batch, so answers are compared between runners whose caches went through the same requests."""
    started: dict[int | str, Runner] = {
        k: await Runner.start(f"gemma-{k}", "gguf", gemma_path,
                              own_runner_load(num_ctx=1024, num_parallel=2, lookup_drafts=v), "INFO")
        for k, v in ((0, 0), (6, 6), ("plain", 0))}
    started["draft"] = await Runner.start("gemma-draft", "gguf", gemma_path, own_runner_load(
        num_ctx=1024, num_parallel=2, lookup_drafts=0, draft=str(gemma_path)), "INFO")
    yield started
    for runner in started.values():
        await runner.stop()


async def answer(runner: Runner, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    pieces: list[str] = []
    async for frame in runner.generate(request):
        if "t" in frame:
            pieces.append(frame["t"])
        elif "done" in frame:
            return "".join(pieces), frame["done"]
    raise AssertionError("the generation ended without a done frame")


def twin(drafter: int | str) -> int | str:
    """The runner with drafting off whose cache went through the same requests as the drafting one's."""
    return 0 if drafter == 6 else "plain"


def ask(prompt: str, **sampling: Any) -> dict[str, Any]:
    return {"prompt": prompt, "raw": True, "sampling": {**GREEDY, "num_predict": 32, **sampling}}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("drafter", [6, "draft"], ids=["lookup", "draft-model"])
@pytest.mark.parametrize("prompt", [LIST, CODE, LONG, PROSE], ids=["list", "code", "long", "prose"])
async def test_greedy_answers_are_the_same_with_drafts(runners: dict[int | str, Runner], prompt: str,
                                                       drafter: int | str) -> None:
    # 64 tokens: the code's answer reaches a near tie (" /" or " //") that numbers computed apart would break.
    plain, plain_done = await answer(runners[twin(drafter)], ask(prompt, num_predict=64))
    drafted, done = await answer(runners[drafter], ask(prompt, num_predict=64))
    assert drafted == plain and done["eval_count"] == plain_done["eval_count"] == 64
    assert plain_done["draft_tokens"] == 0
    if drafter == "draft":  # the model drafting for itself: its sure guesses are its answer
        assert done["draft_tokens"] > 0 and done["draft_accepted"] >= 0.9 * done["draft_tokens"], done
    elif prompt is not PROSE:  # the answer repeats its prompt: most drafts are right
        assert done["draft_accepted"] >= 24, done


@pytest.mark.asyncio(loop_scope="module")
async def test_a_seeded_sample_is_the_same_with_drafts(runners: dict[int | str, Runner]) -> None:
    """Each row is sampled with the sequence's own chain and random draws: drafts change no draw."""
    request = ask(LIST, temperature=0.7, seed=11, repeat_penalty=1.1)
    plain, _ = await answer(runners[0], request)
    drafted, done = await answer(runners[6], request)
    assert drafted == plain and done["draft_accepted"] > 0


@pytest.mark.asyncio(loop_scope="module")
async def test_limits_and_stop_strings_cut_inside_a_step_of_several_tokens(runners: dict[int | str, Runner]) -> None:
    whole, _ = await answer(runners[0], ask(LIST))
    for limit in (1, 5):
        cut, done = await answer(runners[6], ask(LIST, num_predict=limit))
        assert done["eval_count"] == limit and done["done_reason"] == "length" and whole.startswith(cut)
        assert done["draft_tokens"] > 0 or limit == 1
    stopped, done = await answer(runners[6], ask(LIST, stop=[" kiwis"]))
    assert stopped == whole[:whole.index(" kiwis")] and done["done_reason"] == "stop" and done["draft_accepted"] > 0


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("drafter", [6, "draft"], ids=["lookup", "draft-model"])
async def test_two_drafting_sequences_in_one_batch_answer_as_alone(runners: dict[int | str, Runner],
                                                                   drafter: int | str) -> None:
    alone = [await answer(runners[twin(drafter)], ask(p)) for p in (LIST, CODE)]
    together = await asyncio.gather(*(answer(runners[drafter], ask(p)) for p in (LIST, CODE)))
    assert [text for text, _ in together] == [text for text, _ in alone]
    assert all(done["draft_accepted"] > 0 for _, done in together)


@pytest.mark.asyncio(loop_scope="module")
async def test_log_probabilities_and_thinking_budgets_go_a_token_at_a_time(runners: dict[int | str, Runner]) -> None:
    plain, _ = await answer(runners[0], ask(LIST))
    with_logprobs, done = await answer(runners[6], {**ask(LIST), "logprobs": 2})
    assert with_logprobs == plain and done["draft_tokens"] == 0
    # A budget closes the block right after the token that spends it: nothing may be guessed past it.
    _, budgeted = await answer(runners[6], {**ask(f"<think>{LIST}"), "think_budget": 30})
    assert budgeted["draft_tokens"] == 0 and budgeted["eval_count"] > 0


def test_the_final_stats_and_metrics_count_drafts(gemma_daemon: Daemon) -> None:
    status, body = gemma_daemon.request("POST", "/api/generate", {
        "model": "gemma", "prompt": LIST, "raw": True, "stream": False,
        "options": {"temperature": 0, "num_predict": 32}})
    assert status == 200, body
    assert body["eval_count"] == 32 and 0 < body["draft_accepted"] <= body["draft_tokens"], body
    status, text = gemma_daemon.request("GET", "/metrics")
    assert status == 200
    drafted = re.search(r'^r1_draft_tokens_total\{model="gemma:latest"\} (\d+)$', text, re.M)
    kept = re.search(r'^r1_draft_accepted_tokens_total\{model="gemma:latest"\} (\d+)$', text, re.M)
    assert drafted and kept and int(drafted[1]) >= body["draft_tokens"] and int(kept[1]) >= body["draft_accepted"]


def test_r1_lookup_drafts_0_turns_drafting_off(gemma_path: Path, tmp_path: Path) -> None:
    with private_daemon(tmp_path, R1_LOOKUP_DRAFTS="0") as daemon:
        daemon.cli("import", str(gemma_path), "--name", "gemma")
        status, body = daemon.request("POST", "/api/generate", {
            "model": "gemma", "prompt": LIST, "raw": True, "stream": False,
            "options": {"temperature": 0, "num_predict": 32}})
    assert status == 200, body
    assert body["eval_count"] == 32 and "draft_tokens" not in body, body  # the same request drafts by default
