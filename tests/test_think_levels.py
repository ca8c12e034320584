"""Think levels and thinking budgets: Ollama's `think: "low" | "medium" | "high"` and OpenAI's
`reasoning_effort` go to templates that read a level, and elsewhere set a budget of thinking tokens
after which the runner closes the <think> block itself."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.cores import own_runner_load
from tests.support.daemons import Daemon
from r1.daemon.generation import THINK_BUDGETS, Request, thinking_level
from r1.daemon.reasoning import CLOSE_TAG
from r1.daemon.runner.budget import CLOSING, ThinkBudget
from r1.daemon.scheduler.runner_client import Runner
from tests.support.tinymodels import THINK_TEMPLATE, smollm2_gguf

LEVEL_TEMPLATE = "{% if reasoning_effort %}Reasoning: {{ reasoning_effort }}\n{% endif %}{{ messages[-1]['content'] }}"


@pytest.mark.unit
def test_a_budget_counts_only_inside_the_think_block() -> None:
    opened = ThinkBudget(3, opened=True)
    assert [opened.spent(t) for t in ("a", "b", "c", "d")] == [False, False, True, False]  # once, at the third
    written = ThinkBudget(2, opened=False)
    assert [written.spent(t) for t in ("\n", "<thi", "nk>", "x", "y")] == [False, False, False, False, True]
    closed = ThinkBudget(2, opened=True)
    assert [closed.spent(t) for t in ("a", "</think>", "b", "c")] == [False, False, False, False]
    answering = ThinkBudget(1, opened=False)
    assert [answering.spent(t) for t in ("Hello", "<think>", "x")] == [False, False, False]


@pytest.mark.unit
def test_a_level_goes_to_a_template_that_reads_one_and_is_a_budget_elsewhere() -> None:
    frame: dict = {}
    thinking_level(frame, Request("m", effort="low"), LEVEL_TEMPLATE)
    assert frame == {"reasoning_effort": "low"}
    frame = {}
    thinking_level(frame, Request("m", effort="medium"), THINK_TEMPLATE)
    assert frame == {"reasoning_effort": "medium", "think_budget": THINK_BUDGETS["medium"]}
    frame = {}
    thinking_level(frame, Request("m", effort="high"), THINK_TEMPLATE)
    assert frame == {"reasoning_effort": "high"}  # high: as long as the model thinks
    frame = {}
    thinking_level(frame, Request("m", think_budget=7), THINK_TEMPLATE)
    assert frame == {"think_budget": 7}


async def test_the_runner_closes_the_think_block_when_the_budget_is_spent() -> None:
    # SmolLM2 (a real vocabulary: one text frame per token) under a template that opens <think>.
    path = smollm2_gguf()
    runner = await Runner.start("smollm2", "gguf", path, own_runner_load(num_ctx=512, num_parallel=2), "INFO")
    try:
        async def answer(budget: int | None) -> list[str]:
            frame = {"messages": [{"role": "user", "content": "Is 17 a prime number?"}], "template": THINK_TEMPLATE,
                     "sampling": {"temperature": 0, "num_predict": 30}, **({"think_budget": budget} if budget else {})}
            return [f["t"] async for f in runner.generate(frame) if "t" in f]

        free, held = await asyncio.gather(answer(None), answer(6))  # side by side, in one batch
        assert CLOSE_TAG not in "".join(free)
        # Six tokens of the same thinking, then the closing tag the runner wrote, then the model goes on.
        assert "".join(held).startswith("".join(free[:6]) + CLOSING)
        assert "".join(held).split(CLOSE_TAG, 1)[1].strip()
    finally:
        await runner.stop()


@pytest.mark.parametrize("level", ["low", "medium", "high"])
def test_think_levels_are_accepted_in_both_dialects(gemma_daemon: Daemon, level: str) -> None:
    status, answer = gemma_daemon.request("POST", "/api/chat", {
        "model": "thinker", "think": level, "stream": False, "options": {"num_predict": 8, "temperature": 0},
        "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200 and answer["message"].get("thinking"), answer
    status, answer = gemma_daemon.request("POST", "/v1/chat/completions", {
        "model": "thinker", "reasoning_effort": level, "max_tokens": 8,
        "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200 and answer["choices"][0]["message"].get("reasoning_content"), answer
    status, refused = gemma_daemon.request("POST", "/api/chat", {"model": "thinker", "think": "max",
                                                                 "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 400 and "\"low\", \"medium\" or \"high\"" in refused["error"]
