"""The MLX prompt cache on disk (backends/mlx_disk_cache.py, beside kv_files.py's GGUF files): a prompt's cache
saved once evaluated serves it again after an unload and after a daemon restart, never changing an answer; a
bad file is removed, never loaded; the folder keeps within its cap; the budget counts what it counts for GGUF.

mlx-lm really runs the tiny random-weight llama tests/support/tinymlx.py builds, in a daemon's runner or in-process;
every answer is compared with one made with the tier off.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from tests.support.daemons import Daemon, private_daemon
from tests.support.polling import wait_until
from tests.support.tinymlx import write_mlx_model

from r1.daemon.backends.kv_files import finish_writes
from r1.daemon.backends.mlx import MlxBackend
from r1.daemon.backends.mlx_disk_cache import identity

MIN_TOKENS = 100
# About 450 of the tiny tokenizer's tokens: over MIN_TOKENS, within the model's 1024-token context.
PROMPT = " ".join(f"Entry {i}: the robot counted {i * 7 % 13} boats." for i in range(20))
OTHER = " ".join(f"Line {i}: she reads {('books', 'music')[i % 2]} at {i * 5 % 11}." for i in range(20))
GREEDY = {"temperature": 0.0, "repeat_penalty": 1.0}
OFF = {"R1_KV_CACHE_DISK": "0"}
ON = {"R1_KV_CACHE_MIN_TOKENS": str(MIN_TOKENS)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mlx_model(tmp_path_factory.mktemp("mlx") / "tiny")


def cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("**/*.kv"))


# Through the daemon


def generate(daemon: Daemon) -> dict[str, Any]:
    status, body = daemon.request("POST", "/api/generate", {
        "model": "tiny", "prompt": PROMPT, "raw": True, "stream": False,
        "options": {"temperature": 0, "num_predict": 12}})
    assert status == 200, body
    return body


def test_a_prompt_saved_on_disk_answers_alike_after_an_unload_and_after_a_restart(
        tmp_path: Path, folder: Path) -> None:
    with private_daemon(tmp_path, **OFF) as daemon:
        daemon.cli("import", str(folder), "--name", "tiny")
        fresh = generate(daemon)
        estimate_off = daemon.request("POST", "/api/show", {"model": "tiny"})[1]["memory"]["estimate"]
    kv = tmp_path / "home" / "kv"
    with private_daemon(tmp_path, **ON) as daemon:
        first = generate(daemon)
        wait_until(lambda: cache_files(kv), timeout=30)
        daemon.cli("stop", "tiny")
        wait_until(lambda: not daemon.request("GET", "/api/ps")[1]["models"], timeout=30)
        again = generate(daemon)
        # As of the runner's health report, taken after each request: the file is there by this one's.
        wait_until(lambda: daemon.request("GET", "/api/ps")[1]["models"][0]["kv_cache"]["disk"], timeout=30)
        (model,) = daemon.request("GET", "/api/ps")[1]["models"]
        estimate_on = daemon.request("POST", "/api/show", {"model": "tiny"})[1]["memory"]["estimate"]
    assert "prompt_cached" not in first and first["response"] == fresh["response"]
    # All of the prompt but its last token came from the file (that token's logits give the first sample).
    assert (again["prompt_cached"], again["prompt_eval_count"]) == (first["prompt_eval_count"] - 1, 1)
    assert again["response"] == fresh["response"]
    with private_daemon(tmp_path, **ON) as restarted:
        after = generate(restarted)
    assert after["prompt_cached"] == first["prompt_eval_count"] - 1
    assert after["response"] == fresh["response"]
    (path,) = cache_files(kv)
    assert path.name.startswith("mlx-") and path.parent.parent == kv  # $R1_HOME/kv/<weights>/, as GGUF's
    # Shown where the GGUF tier's is; the budget counts no RAM tier for MLX (its kept caches are the slots'),
    # and a file on disk costs no memory.
    assert model["kv_cache"] == {"ram": 0, "ram_cap": 0, "disk": model["kv_cache"]["disk"], "disk_cap": 4 * 1024**3}
    assert 0 < model["kv_cache"]["disk"] < path.stat().st_size
    assert estimate_on == estimate_off == model["estimate"]


# In-process: the runner's backend on a folder of its own


def answer(folder: Path, kv: dict[str, Any] | None, prompt: str = PROMPT) -> tuple[str, int]:
    """The greedy answer (16 tokens at most) and the prompt tokens taken from a cache, by a fresh backend."""
    backend = MlxBackend(folder, {"num_parallel": 2, **({"kv_cache": kv} if kv else {})})
    try:
        backend.add(1, backend.tokenize(prompt), GREEDY, None)
        texts: list[str] = []
        while backend.busy and len(texts) < 16:
            texts += [text for _, text, _ in backend.step()]
        backend.cancel(1)
        return "".join(texts), backend.reused(1)
    finally:
        backend.close()
        finish_writes()


@pytest.fixture
def kv(tmp_path: Path) -> dict[str, Any]:
    return {"dir": str(tmp_path / "kv" / "weights"), "model": "weights", "disk": 10**8, "min_tokens": MIN_TOKENS}


def _spoil(path: Path, change: str) -> None:
    """Spoil a cache file the way `change` says; all but the first two keep a true size and checksum."""
    data = path.read_bytes()
    (length,) = struct.unpack("<I", data[4:8])
    header, state = json.loads(data[8:8 + length]), data[8 + length:]
    if change == "truncated":
        path.write_bytes(data[:-1000])
        return
    if change == "flipped":
        path.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
        return
    (layout_length,) = struct.unpack("<I", state[:4])
    layout, arrays = json.loads(state[4:4 + layout_length]), state[4 + layout_length:]
    if change == "other model":
        header["identity"]["model"] = "other weights"
    elif change == "other mlx":
        header["identity"]["mlx"] = "0.0.1"
    elif change == "gguf state":  # a llama.cpp state file's identity
        header["identity"] = {"model": "weights", "llama_cpp_python": "0.3.16", "state": 1}
    elif change == "other layers":
        layout["classes"][0] = "CacheList"
    elif change == "short arrays":  # the layout claims more bytes than follow it
        layout["leaves"][0][1]["shape"][2] += 1
    elif change == "other offset":  # cells for fewer tokens than the header's
        layout["leaves"][2][1]["value"] -= 1
    encoded = json.dumps(layout).encode()
    state = struct.pack("<I", len(encoded)) + encoded + arrays
    header.update(size=len(state), sha256=hashlib.sha256(state).hexdigest())
    encoded = json.dumps(header).encode()
    path.write_bytes(data[:4] + struct.pack("<I", len(encoded)) + encoded + state)


@pytest.mark.parametrize("change", ["truncated", "flipped", "other model", "other mlx", "gguf state",
                                    "other layers", "short arrays", "other offset"])
def test_a_bad_cache_file_is_removed_never_loaded_and_the_answer_stays_right(
        folder: Path, kv: dict[str, Any], change: str) -> None:
    fresh, _ = answer(folder, None)
    answer(folder, kv)
    (path,) = cache_files(Path(kv["dir"]))
    _spoil(path, change)
    assert answer(folder, kv) == (fresh, 0)  # nothing taken from it
    # It was removed; the prompt, evaluated again, was saved again, good this time.
    (path,) = cache_files(Path(kv["dir"]))
    assert json.loads(path.read_bytes()[8:8 + struct.unpack("<I", path.read_bytes()[4:8])[0]])["identity"] == \
        identity("weights")
    text, reused = answer(folder, kv)
    assert text == fresh and reused > MIN_TOKENS


def test_the_disk_tier_keeps_within_its_cap_least_recently_used_out_first(
        folder: Path, kv: dict[str, Any]) -> None:
    answer(folder, kv)
    (first,) = cache_files(Path(kv["dir"]))
    one = first.stat().st_size
    capped = {**kv, "disk": int(1.5 * one)}  # room for one file's state, not two
    assert answer(folder, capped, OTHER)[1] == 0
    (kept,) = cache_files(Path(kv["dir"]))
    assert kept != first  # the older one went
    assert answer(folder, capped, OTHER)[1] > MIN_TOKENS
    assert answer(folder, capped)[1] == 0  # gone, so evaluated again (and saved, evicting OTHER's)
    assert [p.name for p in cache_files(Path(kv["dir"]))] == [first.name]


def test_a_longer_prompt_continues_from_a_saved_one_and_answers_alike(folder: Path, kv: dict[str, Any]) -> None:
    longer = PROMPT + " Entry 20: the robot counted"
    fresh, _ = answer(folder, None, longer)
    answer(folder, kv)
    text, reused = answer(folder, kv, longer)
    assert text == fresh
    assert reused == _tokens(folder, PROMPT) - 1


def _tokens(folder: Path, prompt: str) -> int:
    backend = MlxBackend(folder, {})
    try:
        return len(backend.tokenize(prompt))
    finally:
        backend.close()
