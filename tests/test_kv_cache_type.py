"""The KV cache type (R1_KV_CACHE_TYPE, the kv_cache_type option): f16, q8_0 or q4_0, counted in the
estimate, loaded as llama.cpp's type_k and type_v, a runner of its own, and said by `r1 show` and `r1 ps`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.daemons import Daemon, private_daemon
from r1.daemon.errors import BadRequest
from r1.daemon.memory import MiB, estimate
from r1.daemon.metadata import ModelFacts
from r1.daemon.options.check import check_options, kv_cache_type

# Gemma 3 270M's shape: 18 layers, one KV head of 256 + 256, a 262k vocabulary.
GEMMA = ModelFacts(format="gguf", block_count=18, head_count=4, head_count_kv=1, key_length=256, value_length=256,
                   vocab_size=262_144)


@pytest.mark.unit
def test_the_estimate_counts_each_kv_cache_type_by_its_bytes_per_element() -> None:
    f16, q8, q4 = (estimate(GEMMA, 250 * MiB, 2048, kv_type=kind, slots=2) for kind in ("f16", "q8_0", "q4_0"))
    elements = 2 * 18 * 2048 * 512  # slots x layers x tokens x (K + V) width
    assert f16.kv_cache == elements * 2 == 2 * 36 * MiB
    assert q8.kv_cache == elements * 34 // 32  # blocks of 32 values: 32 bytes and a 2-byte scale
    assert q4.kv_cache == elements * 18 // 32  # 16 bytes of nibbles and a scale
    assert f16.total - q4.total == f16.kv_cache - q4.kv_cache  # nothing else changes
    mlx = ModelFacts(format="mlx", block_count=2, head_count_kv=2, key_length=32, value_length=32)
    assert estimate(mlx, MiB, 1024).kv_cache == 2 * 1024 * 2 * 64 * 2  # MLX: f16 whatever the setting


@pytest.mark.unit
def test_the_option_is_checked_and_defaults_to_the_setting() -> None:
    assert check_options({"kv_cache_type": "q4_0"}) == {"kv_cache_type": "q4_0"}
    with pytest.raises(BadRequest, match="must be one of f16, q8_0, q4_0, not 'q5_1'"):
        check_options({"kv_cache_type": "q5_1"})
    with pytest.raises(BadRequest, match="must be a string"):
        check_options({"kv_cache_type": 8})
    load: dict = {}
    assert kv_cache_type(load, "gguf", "q8_0") == "q8_0" and load == {"kv_cache_type": "q8_0"}
    load = {"kv_cache_type": "f16"}  # f16 by name shares the default's runner: the load dict leaves it out
    assert kv_cache_type(load, "gguf", "f16") == "f16" and load == {}
    assert kv_cache_type({}, "mlx", "q4_0") == "f16"  # the setting is for GGUF runners
    with pytest.raises(BadRequest, match="for GGUF models; MLX models keep"):
        kv_cache_type({"kv_cache_type": "q8_0"}, "mlx", "f16")


def _answer_and_size(daemon: Daemon, kind: str, options: dict) -> tuple[str, dict]:
    """Gemma's greedy answer with these options, and its runner's /api/ps row, by the cache type it reports."""
    status, answer = daemon.request("POST", "/api/generate", {
        "model": "gemma", "prompt": "The capital of France is", "raw": True, "stream": False,
        "options": {"num_ctx": 16384, "num_predict": 8, "temperature": 0, **options}})
    assert status == 200, answer
    [loaded] = [m for m in daemon.request("GET", "/api/ps")[1]["models"] if m["kv_cache_type"] == kind]
    return answer["response"], loaded


def test_quantized_kv_caches_answer_and_their_runners_are_smaller_by_the_kv_difference(tmp_path: Path,
                                                                                       gemma_path: Path) -> None:
    # One slot and no RAM tier: the runner's size is weights, compute and one context's KV cache.
    with private_daemon(tmp_path, R1_LLAMA_EXTRA_BUFFERS="off", R1_NUM_PARALLEL="1", R1_KV_CACHE_RAM="0",
                        R1_KV_CACHE_TYPE="q8_0") as daemon:
        daemon.cli("import", str(gemma_path), "--name", "gemma")
        answers, sizes = {}, {}
        for kind in ("f16", "q8_0", "q4_0"):
            options = {"kv_cache_type": kind} if kind != "q8_0" else {}  # q8_0: R1_KV_CACHE_TYPE's, with no option
            answers[kind], loaded = _answer_and_size(daemon, kind, options)
            # The runner's load options name the type unless it is f16: f16 by name shares the default's runner.
            assert loaded["options"].get("kv_cache_type") == (None if kind == "f16" else kind)
            sizes[kind] = loaded["size"]
            if kind == "q4_0":
                header, *rows = daemon.cli("ps").stdout.splitlines()
                assert any(line[header.index("CONTEXT"):].startswith("16384 q4_0") for line in rows), rows
            daemon.request("POST", "/api/generate", {"model": "gemma", "keep_alive": 0,
                                                     "options": {"num_ctx": 16384, "kv_cache_type": kind}})
        shown = daemon.cli("show", "gemma").stdout
    assert all(answers.values()), answers
    # 18 layers x 16384 tokens x 512 x 2 bytes = 288 MiB of f16 KV; q8_0 keeps 34/64 of it, q4_0 18/64.
    kv = 288 * MiB
    for kind, share in (("q8_0", 34 / 64), ("q4_0", 18 / 64)):
        saved = sizes["f16"] - sizes[kind]
        assert abs(saved - kv * (1 - share)) < 24 * MiB, (kind, saved / MiB, sizes)
    assert "q8_0 KV cache" in shown  # the model's default context with R1_KV_CACHE_TYPE's type
