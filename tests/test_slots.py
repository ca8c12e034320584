"""Sequence slots (R1_NUM_PARALLEL): the memory estimate counts them, a budget that cannot hold
them all gives fewer, and /api/show, /api/ps, `r1 show` and `r1 ps` say how many (busy / total)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.daemons import Daemon, private_daemon, runner_pids
from tests.support.polling import wait_until
from tests.support.unixhttp import Stream
from r1.daemon.memory import MiB, estimate, slots_that_fit
from r1.daemon.metadata import ModelFacts, read_metadata

# Gemma 3 270M's shape: 18 layers, one KV head of 256 + 256, a 262k vocabulary.
GEMMA = ModelFacts(format="gguf", block_count=18, head_count=4, head_count_kv=1, key_length=256, value_length=256,
                   vocab_size=262_144)


@pytest.mark.unit
def test_the_estimate_counts_the_kv_cache_of_every_slot_and_their_logits() -> None:
    one, four = (estimate(GEMMA, 250 * MiB, 2048, slots=n) for n in (1, 4))
    assert one.kv_cache == 36 * MiB and four.kv_cache == 4 * 36 * MiB  # 18 x 2048 x 512 x 2 bytes per slot
    assert four.compute - one.compute == 3 * 10 * 262_144  # each further slot: the logits of one more output
    assert (one.slots, four.slots) == (1, 4) and four.total - one.total == 3 * (36 * MiB + 10 * 262_144)
    mlx = ModelFacts(format="mlx", block_count=2, head_count_kv=2, key_length=32, value_length=32, quantization="F32")
    assert estimate(mlx, MiB, 1024, slots=3).kv_cache == 3 * 2 * 1024 * 2 * 64 * 4
    assert estimate(mlx, MiB, 1024, slots=3).compute == estimate(mlx, MiB, 1024).compute


@pytest.mark.unit
def test_slots_that_fit_the_budget_between_one_and_the_most() -> None:
    assert slots_that_fit(100, 10, 200, 4) == 4
    assert slots_that_fit(100, 10, 125, 4) == 3  # 100 + 2 x 10 fits, 100 + 3 x 10 does not
    assert slots_that_fit(100, 10, 99, 4) == 1  # not even one fits: the budget check says so, not this
    assert slots_that_fit(100, 0, 100, 8) == 8


def test_a_budget_for_three_slots_gives_three_and_show_says_so(tmp_path: Path, gemma_path: Path) -> None:
    facts = read_metadata("gguf", [gemma_path])
    size = gemma_path.stat().st_size
    one, two = (estimate(facts, size, 4096, slots=n).total for n in (1, 2))
    budget = one + int(2.5 * (two - one))
    with private_daemon(tmp_path, R1_MEMORY_BUDGET=str(budget), R1_LLAMA_EXTRA_BUFFERS="off") as daemon:
        daemon.cli("import", str(gemma_path), "--name", "gemma")
        status, shown = daemon.request("POST", "/api/show", {"model": "gemma"})
        assert status == 200, shown
        memory = shown["memory"]
        assert (memory["slots"], memory["num_ctx"], memory["fits"]) == (3, 4096, True)
        # The RAM tier of KV cells (R1_KV_CACHE_RAM) gets at most what the three slots leave of the budget.
        assert memory["estimate"] == estimate(facts, size, 4096, slots=3).total + memory["kv_ram"] <= budget
        assert "at num_ctx 4096 x 3 slots (fits the" in daemon.cli("show", "gemma").stdout


def test_ps_shows_the_slots_busy_and_the_runner_was_loaded_with_them(gemma_daemon: Daemon) -> None:
    stream = Stream(gemma_daemon.socket, "/api/generate", {
        "model": "gemma", "prompt": "Once upon a time", "raw": True,
        "options": {"num_predict": 4000, "num_ctx": 4096, "temperature": 0}})
    try:
        assert stream.status == 200
        assert not next(iter(stream))["done"]  # streaming: its slot is busy until the answer ends
        status, loaded = gemma_daemon.request("GET", "/api/ps")
        # The runner serving it: another name of the same weights (gemma-chat) may have loaded it.
        [gemma] = [m for m in loaded["models"] if m.get("slots_busy") == 1 and m["context_length"] >= 4096]
        assert (gemma["slots"], gemma["slots_busy"], gemma["options"]["num_parallel"]) == (4, 1, 4)
        header, *rows = gemma_daemon.cli("ps").stdout.splitlines()
        # Its row: the same weights may be loaded twice (another test's load options), idle in the other row.
        slots = [line[header.index("SLOTS"):].split()[0] for line in rows if gemma["digest"][:12] in line]
        assert "1/4" in slots
    finally:
        stream.close()  # the daemon cancels the generation, and the slot is free again

    def idle() -> bool:
        models = gemma_daemon.request("GET", "/api/ps")[1]["models"]
        return all(m["slots_busy"] == 0 for m in models if m["pid"] == gemma["pid"])

    wait_until(idle)


def test_the_estimate_for_four_slots_is_within_15_percent_of_the_runner_measured(tmp_path: Path, gemma_path: Path) -> None:
    # R1_NUM_PARALLEL's default: 4 slots. Extra buffers off: on a CPU whose kernels crash (AMX) the first load
    # falls back without them, and the estimate made before the crash still counts their repacked copy.
    with private_daemon(tmp_path, R1_LLAMA_EXTRA_BUFFERS="off") as daemon:
        daemon.cli("import", str(gemma_path), "--name", "gemma")
        status, answer = daemon.request("POST", "/api/generate", {
            "model": "gemma", "prompt": "Hi", "raw": True, "stream": False,
            "options": {"num_ctx": 8192, "num_predict": 2}})  # 4 x 8192 tokens: 576 MiB of KV
        assert status == 200, answer
        [gemma] = daemon.request("GET", "/api/ps")[1]["models"]
    assert gemma["slots"] == 4 and gemma["context_length"] == 8192
    # size: the runner's resident memory, measured once it loaded (llama.cpp clears its KV cache, so all of it counts).
    assert abs(gemma["estimate"] - gemma["size"]) <= 0.15 * gemma["size"], (gemma["estimate"], gemma["size"])


def test_an_embedding_is_answered_while_the_model_streams_an_answer(gemma_daemon: Daemon) -> None:
    stream = Stream(gemma_daemon.socket, "/api/generate", {
        "model": "gemma", "prompt": "Once upon a time", "raw": True,
        "options": {"num_predict": 4000, "num_ctx": 4096, "temperature": 0}})
    try:
        answers = iter(stream)
        assert not next(answers)["done"]
        runners = set(runner_pids(gemma_daemon))
        status, embedded = gemma_daemon.request("POST", "/api/embed", {
            "model": "gemma", "input": ["a sentence to embed"], "options": {"num_ctx": 4096}})
        assert status == 200 and len(embedded["embeddings"][0]) == 640, embedded
        assert not next(answers)["done"]  # the answer goes on: the embedding did not wait for it, nor end it
        assert set(runner_pids(gemma_daemon)) == runners  # the streaming runner computed it: no other was started
    finally:
        stream.close()
