"""KV cache tiers (backends/kv_tiers.py, kv_files.py): a prompt's cells saved on disk serve it again after
an unload and after a daemon restart, a slot's cells given up to another conversation come back from RAM,
and neither ever changes an answer. Bad files are removed, never loaded; the budget counts the RAM tier.

Real daemons on Gemma 3 270M (a sliding-window model: the hard case for restoring cells), and SmolLM2 for a
model whose saved prompts can be cut back to a shared start. Every answer is compared with one from a daemon
with both tiers off.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.daemons import Daemon, private_daemon
from tests.support.polling import wait_until

from r1.daemon.backends.kv_files import DiskTier, file_name
from r1.daemon.config import Settings
from r1.daemon.scheduler.scheduler import Scheduler

MIN_TOKENS = "200"
# About 300 tokens of Gemma's: long enough to be saved, short enough to evaluate in a second or two.
PROMPT = " ".join(f"Entry {i}: the {('red', 'blue', 'green')[i % 3]} box holds {i * 7 % 13} stones." for i in range(24))
OTHER = " ".join(f"Line {i}: a {('cat', 'dog')[i % 2]} sat on mat {i * 5 % 11}." for i in range(24))
# Extra buffers off: no crash and retry at each first load on an AMX Xeon (tests/test_kernels.py).
FAST = {"R1_LLAMA_EXTRA_BUFFERS": "off"}
OFF = {"R1_KV_CACHE_DISK": "0", "R1_KV_CACHE_RAM": "0", **FAST}


def generate(daemon: Daemon, prompt: str = PROMPT) -> dict[str, Any]:
    status, body = daemon.request("POST", "/api/generate", {
        "model": "gemma", "prompt": prompt, "raw": True, "stream": False,
        "options": {"temperature": 0, "num_predict": 12}})
    assert status == 200, body
    return body


def unload(daemon: Daemon) -> None:
    daemon.cli("stop", "gemma")
    wait_until(lambda: not daemon.request("GET", "/api/ps")[1]["models"], timeout=30)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, gemma_path: Path) -> Path:
    root = tmp_path_factory.mktemp("kv")
    with private_daemon(root, **OFF) as daemon:
        daemon.cli("import", str(gemma_path), "--name", "gemma")
    return root


@pytest.fixture(scope="module")
def fresh(root: Path) -> dict[str, str]:
    """The answers with no cache at all; `turn 2`: PROMPT's answer and more after it, as a chat's next turn."""
    with private_daemon(root, **OFF) as daemon:
        answers = {prompt: generate(daemon, prompt)["response"] for prompt in (PROMPT, OTHER)}
        answers["turn 2"] = generate(daemon, next_turn(answers[PROMPT]))["response"]
        return answers


def next_turn(answer: str) -> str:
    return PROMPT + answer + " Entry 99:"


@pytest.fixture
def cached(root: Path) -> Iterator[Daemon]:
    """A daemon with the disk tier on (each test its own: two daemons never share a store)."""
    with private_daemon(root, **FAST, R1_KV_CACHE_MIN_TOKENS=MIN_TOKENS, R1_KV_CACHE_RAM="0") as daemon:
        yield daemon


def cache_files(root: Path) -> list[Path]:
    return sorted((root / "home" / "kv").glob("*/*.kv"))


def test_a_prompt_saved_on_disk_answers_alike_after_an_unload_and_after_a_restart(
        root: Path, fresh: dict[str, str]) -> None:
    with private_daemon(root, **FAST, R1_KV_CACHE_MIN_TOKENS=MIN_TOKENS, R1_KV_CACHE_RAM="0") as daemon:
        first = generate(daemon)
        assert first["response"] == fresh[PROMPT]
        assert "prompt_cached" not in first
        wait_until(lambda: cache_files(root), timeout=30)
        unload(daemon)
        again = generate(daemon)
    # All of the prompt but its last token came from the file (that token's logits give the first sample).
    assert (again["prompt_cached"], again["prompt_eval_count"]) == (first["prompt_eval_count"] - 1, 1)
    assert again["response"] == fresh[PROMPT]
    with private_daemon(root, **FAST, R1_KV_CACHE_MIN_TOKENS=MIN_TOKENS) as restarted:
        after = generate(restarted)
    assert after["prompt_cached"] == first["prompt_eval_count"] - 1
    assert after["response"] == fresh[PROMPT]


def _rewrite(path: Path, change: str) -> None:
    """Spoil a cache file the way `change` says."""
    data = path.read_bytes()
    (length,) = struct.unpack("<I", data[4:8])
    header, state = json.loads(data[8:8 + length]), data[8 + length:]
    if change == "truncated":
        path.write_bytes(data[: len(data) - 1000])
        return
    if change == "flipped":
        path.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
        return
    if change == "other model":
        header["identity"]["model"] = "sha256-" + "0" * 64
    elif change == "refused":  # checksum and header true, the state llama.cpp's own format no longer
        state = bytes(len(state))
        header["sha256"] = hashlib.sha256(state).hexdigest()
    encoded = json.dumps(header).encode()
    path.write_bytes(data[:4] + struct.pack("<I", len(encoded)) + encoded + state)


@pytest.mark.parametrize("change", ["truncated", "flipped", "other model", "refused"])
def test_a_bad_cache_file_is_removed_and_the_answer_stays_right(
        root: Path, fresh: dict[str, str], cached: Daemon, change: str) -> None:
    generate(cached)
    wait_until(lambda: cache_files(root), timeout=30)
    (path,) = cache_files(root)
    unload(cached)
    _rewrite(path, change)
    body = generate(cached)
    assert "prompt_cached" not in body  # nothing was loaded from it
    assert body["response"] == fresh[PROMPT]
    # It was removed; the prompt, evaluated again, was saved again, good this time.
    wait_until(lambda: cache_files(root) and _good(cache_files(root)[0]), timeout=30)
    unload(cached)
    assert generate(cached)["prompt_cached"] > 0


def _good(path: Path) -> bool:
    data = path.read_bytes()
    (length,) = struct.unpack("<I", data[4:8])
    header = json.loads(data[8:8 + length])
    return header["identity"]["model"] != "sha256-" + "0" * 64 and \
        hashlib.sha256(data[8 + length:]).hexdigest() == header["sha256"] and any(data[8 + length:])


def test_a_slot_given_up_to_another_conversation_comes_back_from_ram(root: Path, fresh: dict[str, str]) -> None:
    ram_only = {"R1_KV_CACHE_MIN_TOKENS": MIN_TOKENS, "R1_KV_CACHE_DISK": "0", "R1_NUM_PARALLEL": "1"}
    with private_daemon(root, **FAST, **ram_only) as daemon:
        first = generate(daemon)
        assert generate(daemon, OTHER)["response"] == fresh[OTHER]  # takes the one slot: PROMPT's cells to RAM
        back = generate(daemon, next_turn(first["response"]))
        kv = daemon.request("GET", "/api/ps")[1]["models"][0]["kv_cache"]
    # The prompt and the answer's tokens decoded (all but the last sampled) came back.
    assert back["prompt_cached"] == first["prompt_eval_count"] + first["eval_count"] - 1
    assert back["response"] == fresh["turn 2"]
    assert 0 < kv["ram"] <= kv["ram_cap"] == 512 * 1024**2


def test_the_budget_counts_the_ram_tier_and_shrinks_it_to_what_fits(root: Path) -> None:
    with private_daemon(root, **OFF) as daemon:
        without = daemon.request("POST", "/api/show", {"model": "gemma"})[1]["memory"]
    with private_daemon(root, **FAST, R1_KV_CACHE_RAM="300MiB") as daemon:
        with_tier = daemon.request("POST", "/api/show", {"model": "gemma"})[1]["memory"]
        generate(daemon, "Hello")
        (model,) = daemon.request("GET", "/api/ps")[1]["models"]
    assert with_tier["estimate"] == without["estimate"] + 300 * 1024**2 == model["estimate"]
    assert model["kv_cache"]["ram_cap"] == 300 * 1024**2
    assert model["size"] > 300 * 1024**2  # measured: the runner's resident size plus the tier's reservation
    # A budget with 10 MiB to spare beside the model gives the tier those 10 MiB, and the model still loads.
    budget = without["estimate"] + 10 * 1024**2
    scheduler = Scheduler(Settings.from_env({"R1_MEMORY_BUDGET": str(budget)}), None)  # type: ignore[arg-type]
    assert scheduler.host_cache("gguf", without["estimate"]) == 10 * 1024**2
    assert scheduler.host_cache("gguf", budget) == 0
    assert scheduler.host_cache("mlx", 0) == 0


@pytest.mark.unit
def test_the_disk_tier_keeps_within_its_cap_least_recently_used_out_first(tmp_path: Path) -> None:
    identity = {"model": "m"}
    tier = DiskTier(tmp_path, identity, cap=3000)
    for n in range(3):
        tier.write((1, 2, n), bytes([n + 1]) * 1200)
    kept = {p.name for p in tmp_path.glob("*.kv")}
    assert kept == {file_name((1, 2, 1)), file_name((1, 2, 2))}  # 3600 bytes would not fit: the oldest went
    entry = tier.entries[tmp_path / file_name((1, 2, 1))]
    entry.used -= 100  # older, but read since: read() marks it used
    assert tier.read(entry) == bytes([2]) * 1200
    tier.write((1, 2, 3), bytes([4]) * 1200)
    assert {p.name for p in tmp_path.glob("*.kv")} == {file_name((1, 2, 1)), file_name((1, 2, 3))}
    assert sum(p.stat().st_size for p in tmp_path.glob("*.kv")) < 3000 + 3 * 200  # state plus headers


def test_on_a_model_without_sliding_windows_a_longer_saved_prompt_serves_a_shared_start(tmp_path: Path) -> None:
    """SmolLM2 (llama, every layer full attention): a saved prompt is restored and cut back to what a new prompt
    shares with it, so a long system prompt followed by another question is evaluated once."""
    from tests.support.tinymodels import smollm2_gguf

    second = PROMPT + " Question: which box holds the most stones?"
    first = PROMPT + " Question: how many boxes are green?"

    def ask(daemon: Daemon, prompt: str) -> dict[str, Any]:
        status, body = daemon.request("POST", "/api/generate", {
            "model": "smol", "prompt": prompt, "raw": True, "stream": False,
            "options": {"temperature": 0, "num_predict": 12}})
        assert status == 200, body
        return body

    with private_daemon(tmp_path, **OFF) as daemon:
        daemon.cli("import", str(smollm2_gguf()), "--name", "smol")
        fresh = ask(daemon, second)
    with private_daemon(tmp_path, **FAST, R1_KV_CACHE_MIN_TOKENS=MIN_TOKENS, R1_KV_CACHE_RAM="0") as daemon:
        ask(daemon, first)
        wait_until(lambda: cache_files(tmp_path), timeout=30)
        daemon.cli("stop", "smol")
        wait_until(lambda: not daemon.request("GET", "/api/ps")[1]["models"], timeout=30)
        again = ask(daemon, second)
    shared = again.get("prompt_cached", 0)
    assert 200 < shared < again["prompt_eval_count"] + shared, again  # the start, not the whole prompt
    assert again["response"] == fresh["response"]
    assert again["prompt_eval_count"] + shared == fresh["prompt_eval_count"]
