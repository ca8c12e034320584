"""The MLX backend batching several sequences (mlx-lm's BatchGenerator) and keeping prompt caches
across turns, in-process on the tiny random-weight model that mlx-lm really loads and runs."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from r1.daemon.backends.base import BackendError
from r1.daemon.backends.mlx import MlxBackend
from tests.support.daemons import private_daemon
from r1.daemon.templates import template
from tests.support.tinymlx import write_mlx_model

GREEDY = {"temperature": 0.0, "repeat_penalty": 1.0}
PROMPTS = [
    "Once upon a time",
    "The robot",  # greedy, the tiny model samples EOS after 9 tokens: one sequence ends mid-batch
    "Why is the sky blue? Sunlight is",
    "She reads books in the evening, he plays music at night, and",
]
TOKENS = 16


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mlx_model(tmp_path_factory.mktemp("mlx") / "tiny")


@pytest.fixture
def backend(folder: Path) -> Iterator[MlxBackend]:
    backend = MlxBackend(folder, {"num_parallel": 4})
    yield backend
    backend.close()


def run(backend: MlxBackend, requests: dict[int, tuple[str, dict]], *, join_every: int = 0,
        cancel: dict[int, int] | None = None) -> dict[int, tuple[str, bool]]:
    """Each request's text and whether it ended on its own, up to TOKENS tokens: all added at once, or
    one more every `join_every` steps; cancel[seq] = n cancels seq after n tokens."""
    pending = list(requests.items())
    texts: dict[int, list[str]] = {seq: [] for seq in requests}
    ended: dict[int, bool] = dict.fromkeys(requests, False)
    steps = 0
    while pending or backend.busy:
        assert steps < 10 * TOKENS * len(requests), "the batch never finished"  # a bound on steps, not time
        if pending and (not join_every or steps % join_every == 0):
            for seq, (prompt, sampling) in pending[: 1 if join_every else None]:
                backend.add(seq, backend.tokenize(prompt), sampling, None)
            pending = pending[1:] if join_every else []
        for seq, text, end in backend.step():
            texts[seq].append(text)
            ended[seq] = end
            limit = (cancel or {}).get(seq, TOKENS)
            if not end and len(texts[seq]) >= limit:
                backend.cancel(seq)
        steps += 1
    return {seq: ("".join(texts[seq]), ended[seq]) for seq in requests}


def render(backend: MlxBackend, messages: list[dict]) -> str:
    return template.render(backend.chat_template, messages, bos_token=backend.bos_token, eos_token=backend.eos_token)


def alone(folder: Path, prompt: str, sampling: dict) -> tuple[str, bool]:
    """What a request gets on a model of its own."""
    backend = MlxBackend(folder, {})
    try:
        return run(backend, {0: (prompt, sampling)})[0]
    finally:
        backend.close()


@pytest.fixture(scope="module")
def solo(folder: Path) -> list[tuple[str, bool]]:
    return [alone(folder, prompt, GREEDY) for prompt in PROMPTS]


def test_four_sequences_batch_to_the_text_each_gets_alone(backend: MlxBackend, solo) -> None:
    assert backend.slots == 4
    assert solo[1][1] and not solo[0][1], "the tiny model no longer ends PROMPTS[1] early"
    together = run(backend, {seq: (p, GREEDY) for seq, p in enumerate(PROMPTS)})
    assert [together[seq] for seq in range(4)] == solo
    # Joining a running batch one by one, each prompt read between the others' decode steps.
    staggered = run(backend, {seq: (p, GREEDY) for seq, p in enumerate(PROMPTS)}, join_every=3)
    assert [staggered[seq] for seq in range(4)] == solo
    assert not backend.busy


def test_small_prompt_chunks_give_the_same_text(folder: Path, solo) -> None:
    """A prompt read 3 tokens a step, between the decode steps of the others, gives the same answer."""
    backend = MlxBackend(folder, {"num_parallel": 4, "num_batch": 3})
    together = run(backend, {seq: (p, GREEDY) for seq, p in enumerate(PROMPTS)}, join_every=2)
    assert [together[seq] for seq in range(4)] == solo


def test_sampling_is_per_sequence(backend: MlxBackend, folder: Path, solo) -> None:
    """A seeded, sampled sequence draws the same tokens beside greedy ones as alone: each has its own key."""
    sampled = {"temperature": 1.0, "top_k": 50, "top_p": 0.95, "seed": 7}
    expected = alone(folder, PROMPTS[0], sampled)
    assert expected != solo[0]
    mixed = run(backend, {0: (PROMPTS[0], sampled), 1: (PROMPTS[2], GREEDY), 2: (PROMPTS[3], GREEDY),
                          3: (PROMPTS[0], {**sampled, "seed": 8})})
    assert mixed[0] == expected and mixed[1] == solo[2] and mixed[2] == solo[3]
    assert mixed[3] != expected  # another seed
    penalized = {**GREEDY, "presence_penalty": 100.0, "repeat_last_n": -1}
    assert run(backend, {0: (PROMPTS[0], penalized), 1: (PROMPTS[0], GREEDY)})[1] == solo[0]


def test_cancel_frees_the_slot_and_the_others_go_on(backend: MlxBackend, solo) -> None:
    result = run(backend, {seq: (p, GREEDY) for seq, p in enumerate(PROMPTS)}, cancel={2: 3})
    assert result[0] == solo[0] and result[1] == solo[1] and result[3] == solo[3]
    assert solo[2][0].startswith(result[2][0]) and len(result[2][0]) < len(solo[2][0])
    assert run(backend, {9: (PROMPTS[2], GREEDY)})[9] == solo[2]  # the freed slot serves the next one
    backend.add(10, backend.tokenize(PROMPTS[0]), GREEDY, None)
    backend.cancel(10)  # queued, its prompt not read yet
    assert not backend.busy and backend.step() == []


def test_follow_up_turn_evaluates_only_the_new_tokens(backend: MlxBackend, folder: Path) -> None:
    chat = [{"role": "user", "content": "Hello there"}]
    first = backend.tokenize(render(backend, chat))
    # 8 tokens: the random model's text up to there is plain ASCII, so it tokenizes back to the same tokens.
    answer, _ = run(backend, {1: (backend.detokenize(first), GREEDY)}, cancel={1: 8})[1]
    assert answer.isascii() and answer.isprintable(), "the tiny model's first 8 greedy tokens changed"
    assert backend.reused(1) == 0  # a fresh model has nothing cached
    follow = chat + [{"role": "assistant", "content": answer}, {"role": "user", "content": "And at night?"}]
    second = backend.tokenize(render(backend, follow))
    with backend._batch.stats() as stats:  # what mlx-lm itself evaluated
        reply = run(backend, {2: (backend.detokenize(second), GREEDY)})[2]
    assert backend.reused(2) == len(first) + len(backend.tokenize(answer)) - 1  # the history; BOS once
    # The prompt chunks read the new turn but its last token, which the first decode step evaluates.
    assert stats.prompt_tokens == len(second) - backend.reused(2) - 1
    assert reply == alone(folder, backend.detokenize(second), GREEDY)  # as if evaluated from scratch
    assert backend.reused(1) == 0  # still known after its sequence ended


def test_kept_caches_and_running_sequences_fit_the_slots(folder: Path) -> None:
    backend = MlxBackend(folder, {"num_parallel": 2})
    run(backend, {seq: (p, GREEDY) for seq, p in enumerate(PROMPTS)}, join_every=1)
    assert len(backend._caches) == 2
    backend.add(7, backend.tokenize(PROMPTS[3] + " again"), GREEDY, None)  # the last to finish: kept
    assert backend.reused(7) == len(backend.tokenize(PROMPTS[3]))
    assert len(backend._caches) == 1  # one slot runs, one keeps a cache


@pytest.mark.unit
def test_bad_requests_are_refused_before_anything_is_queued(backend: MlxBackend) -> None:
    tokens = backend.tokenize("hi")
    with pytest.raises(BackendError, match="JSON"):
        backend.add(1, tokens, {}, "json")
    with pytest.raises(BackendError, match="min_p"):
        backend.add(1, tokens, {"min_p": 2.0}, None)
    with pytest.raises(BackendError, match="penalty"):
        backend.add(1, tokens, {"repeat_penalty": -1.0}, None)
    with pytest.raises(BackendError, match="empty"):
        backend.add(1, [], {}, None)
    assert not backend.busy
    backend.add(1, tokens, GREEDY, None)
    with pytest.raises(BackendError, match="already running"):
        backend.add(1, tokens, GREEDY, None)
    with pytest.raises(BackendError, match="batching others"):
        next(backend.stream(tokens, GREEDY, None))
    backend.cancel(1)


def test_through_a_daemon_four_requests_batch_and_a_chat_turn_reuses_its_prefix(tmp_path: Path) -> None:
    folder = write_mlx_model(tmp_path / "tiny-mlx")
    local = MlxBackend(folder, {})  # the model's tokenizer and template, to count tokens here
    with private_daemon(tmp_path, R1_NUM_PARALLEL="4") as daemon:
        daemon.cli("import", str(folder), "--name", "tiny-mlx")
        chat = [{"role": "user", "content": "Hello there"}]
        status, first = daemon.request("POST", "/api/chat", {
            "model": "tiny-mlx", "messages": chat, "stream": False, "options": {**GREEDY, "num_predict": 8}})
        assert status == 200, first
        answer = first["message"]["content"]
        assert first["prompt_eval_count"] == len(local.tokenize(render(local, chat)))  # nothing cached yet
        follow = chat + [first["message"], {"role": "user", "content": "And at night?"}]
        status, second = daemon.request("POST", "/api/chat", {
            "model": "tiny-mlx", "messages": follow, "stream": False, "options": {**GREEDY, "num_predict": 8}})
        assert status == 200, second
        history = len(local.tokenize(render(local, chat))) + len(local.tokenize(answer)) - 1  # BOS once
        assert second["prompt_eval_count"] == len(local.tokenize(render(local, follow))) - history

        def generate(prompt: str) -> str:
            status, answer = daemon.request("POST", "/api/generate", {
                "model": "tiny-mlx", "prompt": prompt, "raw": True, "stream": False,
                "options": {**GREEDY, "num_predict": TOKENS}})
            assert status == 200, answer
            return answer["response"]

        solo = [generate(prompt) for prompt in PROMPTS]
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            assert list(pool.map(generate, PROMPTS)) == solo
    local.close()
