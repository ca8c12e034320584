"""Slots share a runner fairly: each holds its own context, a long prompt does not starve the others.

A real runner on SmolLM2 135M Instruct. Fairness is shown by the order frames arrive in, never by the
clock: llama.cpp's step times on a busy 2-core machine are noise, their order is not.
"""

from __future__ import annotations

import asyncio

from tests.support.realrunner import GREEDY, generate, start
from tests.support.tinymodels import smollm2_gguf

# About 3,000 tokens: six chunks of 512 for the runner to evaluate.
LONG_PROMPT = "Once upon a time, in a land far away, there lived a curious fox. " * 180


async def test_each_slot_holds_its_own_context_of_num_ctx_tokens() -> None:
    # In one unified cache a sequence saw all 3 x 1024 cells (llama.cpp's n_ctx_seq 3072), and every
    # token was computed against the cells of every slot.
    runner = await start(smollm2_gguf(), 3, num_ctx=1024)
    await runner.stop()


async def test_a_short_request_finishes_while_a_long_prompt_is_evaluated() -> None:
    runner = await start(smollm2_gguf(), 2, num_ctx=4096)
    try:
        log: list[tuple[int, str]] = []
        long = asyncio.ensure_future(generate(runner, {"prompt": LONG_PROMPT, "raw": True,
                                                       "sampling": {**GREEDY, "num_predict": 2}}, log, 0))
        await asyncio.sleep(0.2)  # the long prompt is being evaluated
        _, done = await generate(runner, {"prompt": "The capital of France is", "raw": True,
                                          "sampling": {**GREEDY, "num_predict": 4}}, log, 1)
        assert done["eval_count"] == 4
        # Oldest prompt first, the short one waited for all six chunks of the long one.
        assert (0, "t") not in log, log
        await long
    finally:
        await runner.stop()


async def test_a_long_prompt_takes_its_share_of_time_not_all_of_it() -> None:
    runner = await start(smollm2_gguf(), 2, num_ctx=4096)
    try:
        log: list[tuple[int, str]] = []
        chat = asyncio.ensure_future(generate(runner, {"prompt": "Monday, Tuesday,", "raw": True,
                                                       "sampling": {**GREEDY, "num_predict": 24}}, log, 1))
        while (1, "t") not in log:
            await asyncio.sleep(0.01)
        long = asyncio.ensure_future(generate(runner, {"prompt": LONG_PROMPT, "raw": True,
                                                       "sampling": {**GREEDY, "num_predict": 2}}, log, 0))
        _, done = await chat
        assert done["eval_count"] == 24
        # One token a step while the prompt took every step: 24 tokens would outlast its six chunks.
        # Given steps of its own for as long as the prompt's chunks take, the chat ends first.
        assert (0, "t") not in log, log
        await long
    finally:
        await runner.stop()
