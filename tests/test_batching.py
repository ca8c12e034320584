"""Continuous batching in the GGUF runner: several generations share one llama.cpp context.

Real runners on real models: Gemma 3 270M for plain text, SmolLM2 135M Instruct for chats and
grammars (its 49k vocabulary keeps a JSON grammar quick). Concurrency is shown by the order frames
arrive in, never by the clock: a request's text arriving before another's `done` ran beside it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.support.realrunner import GREEDY, generate, start
from tests.support.tinymodels import smollm2_gguf

PROMPTS = ["The capital of France is", "Monday, Tuesday, Wednesday,", "1, 2, 3, 4,", "The best way to cook rice"]
# llama.cpp's matrix kernels add up in a different order for a batch of 4 rows than for 1, so a greedy
# answer may take another word once two candidates are nearly tied; the first tokens never are here.
SAME_TOKENS = 8


def overlapped(log: list[tuple[int, str]], a: int, b: int) -> bool:
    """Whether `b` sent text before `a` was done (or `a` is not done yet)."""
    return (a, "done") not in log or log.index((b, "t")) < log.index((a, "done"))


async def test_four_concurrent_greedy_answers_start_as_when_alone(gemma_path: Path) -> None:
    runner = await start(gemma_path, 4)
    try:
        requests = [{"prompt": p, "raw": True, "sampling": {**GREEDY, "num_predict": 16}} for p in PROMPTS]
        log: list[tuple[int, str]] = []
        alone = [await generate(runner, r, log, i) for i, r in enumerate(requests)]
        log.clear()
        together = await asyncio.gather(*(generate(runner, r, log, i) for i, r in enumerate(requests)))
        assert all(overlapped(log, 0, i) for i in range(1, 4)), log
        for (solo, _), (batched, done) in zip(alone, together):
            assert done["eval_count"] == 16 and done["done_reason"] == "length"
            assert batched[:SAME_TOKENS] == solo[:SAME_TOKENS] and "".join(batched).strip()
    finally:
        await runner.stop()


async def test_a_json_schema_request_and_a_free_one_share_a_batch(tmp_path: Path) -> None:
    runner = await start(smollm2_gguf(), 2)
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    ask = [{"role": "user", "content": "Describe a person as JSON."}]
    free = [{"role": "user", "content": "Why is the sky blue?"}]
    try:
        log: list[tuple[int, str]] = []
        (shaped, done), (prose, _) = await asyncio.gather(
            generate(runner, {"messages": ask, "format": schema, "sampling": {**GREEDY, "num_predict": 48}}, log, 0),
            generate(runner, {"messages": free, "sampling": {**GREEDY, "num_predict": 48}}, log, 1))
        assert overlapped(log, 0, 1) or overlapped(log, 1, 0), log
        assert done["done_reason"] == "stop", "".join(shaped)  # the grammar closed the object
        answer = json.loads("".join(shaped))
        assert set(answer) == {"name", "age"} and isinstance(answer["name"], str) and isinstance(answer["age"], int)
        with pytest.raises(ValueError):
            json.loads("".join(prose))
        assert len("".join(prose).split()) > 10
    finally:
        await runner.stop()


async def test_a_cancelled_sequence_frees_its_slot_for_the_next_request(gemma_path: Path) -> None:
    runner = await start(gemma_path, 4)
    try:
        requests = [{"prompt": p, "raw": True, "sampling": {**GREEDY, "num_predict": 24}} for p in PROMPTS]
        log: list[tuple[int, str]] = []
        alone = [await generate(runner, r, log, i) for i, r in enumerate(requests[1:], 1)]
        log.clear()
        others = [asyncio.ensure_future(generate(runner, r, log, i)) for i, r in enumerate(requests[1:], 1)]
        cancelled, _ = await generate(runner, requests[0], log, 0, stop_after=2)
        assert len(cancelled) == 2
        # The same prompt again, while the others still run: it finds the cancelled one's slot free and its
        # prompt in the slot's cells, so only the last prompt token is evaluated again.
        _, again = await generate(runner, {**requests[0], "sampling": {**GREEDY, "num_predict": 4}}, log, 4)
        assert again["done_reason"] == "length" and again["prompt_eval_count"] == 1 and again["prompt_cached"] > 0
        finished = await asyncio.gather(*others)
        assert all(overlapped(log, i, 4) for i in range(1, 4)), log
        for (solo, _), (batched, done) in zip(alone, finished):
            assert done["eval_count"] == 24 and batched[:SAME_TOKENS] == solo[:SAME_TOKENS]
    finally:
        await runner.stop()


async def test_a_chats_second_turn_reuses_its_slot_on_a_busy_model() -> None:
    runner = await start(smollm2_gguf(), 3)
    try:
        log: list[tuple[int, str]] = []
        busy = asyncio.ensure_future(generate(runner, {"messages": [{"role": "user", "content": "Tell a long story."}],
                                                       "sampling": {**GREEDY, "num_predict": 120}}, log, 0))
        first = [{"role": "user", "content": "Name a fruit."}]
        other = [{"role": "user", "content": "Name a country in Europe, please."}]
        said, turn = await generate(runner, {"messages": first, "sampling": {**GREEDY, "num_predict": 8}}, log, 1)
        await generate(runner, {"messages": other, "sampling": {**GREEDY, "num_predict": 8}}, log, 2)
        second = [*first, {"role": "assistant", "content": "".join(said)}, {"role": "user", "content": "Another one?"}]
        _, follow = await generate(runner, {"messages": second, "sampling": {**GREEDY, "num_predict": 8}}, log, 3)
        # Both earlier chats share the template's system prompt; only the first holds this chat's history.
        assert turn["prompt_cached"] == 0
        # Only the new turn is evaluated: the history (the first turn's prompt and answer) came from the slot.
        assert follow["prompt_cached"] >= turn["prompt_eval_count"]
        assert follow["prompt_eval_count"] < follow["prompt_cached"]
        assert overlapped(log, 0, 3), log  # the long story was still being told
        await busy
    finally:
        await runner.stop()
