"""Hot models with real runners: the memory budget, eviction, sharing, ps, stop, rm of a loaded model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import Daemon, private_daemon, runner_pids
from tests.support.polling import wait_until

MB = 1_000_000


@pytest.fixture
def budget_daemon(request: pytest.FixtureRequest, tmp_path: Path, gemma_path: Path) -> Iterator[Daemon]:
    # The budgets below were measured without llama.cpp's extra buffers: off, the sizes are the same on
    # every CPU (with them, an AMX Xeon adds ~200 MiB of repacked weights; tests/test_kernels.py).
    with private_daemon(tmp_path, R1_MEMORY_BUDGET=request.param, R1_LLAMA_EXTRA_BUFFERS="off") as daemon:
        daemon.cli("import", str(gemma_path), "--name", "gemma")
        yield daemon


def ask(daemon: Daemon, num_ctx: int = 2048, model: str = "gemma", threads: int = 2, prompt: str = "Hello",
        **extra: Any) -> dict[str, Any]:
    status, answer = daemon.request("POST", "/api/generate", {
        "model": model, "prompt": prompt, "raw": True, "stream": False,
        "options": {"num_ctx": num_ctx, "num_predict": 2, "temperature": 0, "num_thread": threads}, **extra})
    assert status == 200, answer
    return answer


def ps(daemon: Daemon) -> dict[str, Any]:
    status, answer = daemon.request("GET", "/api/ps")
    assert status == 200
    return answer


# Gemma 3 270M needs about 400 MB at num_ctx 2048 and 515 MB at 8192 (r1 show); 700 MB holds one.
# Another num_thread is another runner; another num_ctx is not (the larger context serves both).
@pytest.mark.parametrize("budget_daemon", ["700MB"], indirect=True)
def test_a_budget_for_one_instance_evicts_the_first_for_the_second(budget_daemon: Daemon) -> None:
    ask(budget_daemon, threads=2)
    [first] = ps(budget_daemon)["models"]
    assert first["context_length"] == 2048 and first["state"] == "idle"
    ask(budget_daemon, threads=1)
    wait_until(lambda: len(runner_pids(budget_daemon)) == 1)
    [second] = ps(budget_daemon)["models"]
    assert second["pid"] != first["pid"]
    assert second["size"] <= 700 * MB
    assert "to make room for gemma" in budget_daemon.log()


@pytest.mark.parametrize("budget_daemon", ["2GB"], indirect=True)
def test_a_budget_for_both_keeps_both_hot_with_no_reload(budget_daemon: Daemon) -> None:
    for _ in range(3):
        ask(budget_daemon, threads=2)
        ask(budget_daemon, threads=1)
    loaded = ps(budget_daemon)
    assert len(loaded["models"]) == 2
    pids = {m["pid"] for m in loaded["models"]}
    for _ in range(3):
        assert ask(budget_daemon, threads=2)["load_duration"] < 50_000_000  # hot: no load
        ask(budget_daemon, threads=1)
    assert {m["pid"] for m in ps(budget_daemon)["models"]} == pids
    assert budget_daemon.log().count("gemma:latest loaded:") == 2
    assert ("gemma:latest is loaded 2 times: its requests asked for other load options (num_thread 1; num_thread 2)"
            in budget_daemon.cli("ps").stdout)
    assert loaded["memory"]["used"] == sum(m["size"] for m in loaded["models"])


@pytest.mark.parametrize("budget_daemon", ["2GB"], indirect=True)
def test_a_larger_context_replaces_the_smaller_and_serves_it_within_its_own(budget_daemon: Daemon) -> None:
    ask(budget_daemon, 2048)
    ask(budget_daemon, 8192)
    wait_until(lambda: len(runner_pids(budget_daemon)) == 1)
    [loaded] = ps(budget_daemon)["models"]
    assert loaded["context_length"] == 8192
    assert "unloading gemma:latest: replaced by a runner with num_ctx 8192" in budget_daemon.log()
    ask(budget_daemon, 2048)  # served by the larger one: no load
    assert budget_daemon.log().count("gemma:latest loaded:") == 2
    status, answer = budget_daemon.request("POST", "/api/generate", {
        "model": "gemma", "prompt": "one two three " * 20, "raw": True, "stream": False,
        "options": {"num_ctx": 32, "num_predict": 2, "num_thread": 2}})
    assert status == 400 and "fills the model's context of 32" in answer["error"]
    assert [m["pid"] for m in ps(budget_daemon)["models"]] == [loaded["pid"]]


@pytest.mark.parametrize("budget_daemon", ["300MB"], indirect=True)
def test_a_model_that_can_never_fit_fails_at_once_and_show_says_so(budget_daemon: Daemon) -> None:
    status, answer = budget_daemon.request("POST", "/api/generate", {"model": "gemma", "prompt": "hi", "stream": False})
    assert status == 507
    assert "needs" in answer["error"] and "memory budget is 286 MiB" in answer["error"]
    assert runner_pids(budget_daemon) == []
    shown = budget_daemon.cli("show", "gemma").stdout
    assert "DOES NOT FIT" in shown
    warned = budget_daemon.cli("run", "gemma", "hi", check=False)
    assert "Warning: gemma needs about" in warned.stderr and warned.returncode == 1


@pytest.mark.parametrize("budget_daemon", ["2GB"], indirect=True)
def test_ps_stop_and_rm_of_a_loaded_model(budget_daemon: Daemon) -> None:
    budget_daemon.cli("cp", "gemma", "gemma-copy")
    ask(budget_daemon, keep_alive="10m")
    model = ps(budget_daemon)["models"][0]
    assert set(model) >= {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"}
    assert model["name"] == "gemma:latest" and model["size_vram"] == 0 and model["details"]["family"] == "gemma3"
    # The size counts the RAM tier of KV cells (R1_KV_CACHE_RAM) whole: what the runner has not filled of it yet.
    reserved = model["kv_cache"]["ram_cap"] - model["kv_cache"]["ram"]
    assert 300 * MB < model["size"] - reserved < 600 * MB
    listing = budget_daemon.cli("ps").stdout
    assert "gemma:latest" in listing and "100% CPU" in listing and "minutes from now" in listing
    assert "memory budget in use" in listing

    budget_daemon.cli("stop", "gemma")
    wait_until(lambda: not runner_pids(budget_daemon))
    assert ps(budget_daemon)["models"] == []

    budget_daemon.cli("cp", "gemma", "gemma-third")
    ask(budget_daemon, model="gemma-copy", keep_alive=-1)
    assert "Forever" in budget_daemon.cli("ps").stdout
    budget_daemon.cli("rm", "gemma")  # not the name it was loaded as: the runner stays
    assert len(runner_pids(budget_daemon)) == 1
    assert [m["name"] for m in ps(budget_daemon)["models"]] == ["gemma-copy:latest"]
    budget_daemon.cli("rm", "gemma-copy")  # the name it was loaded as: unloaded, though gemma-third remains
    wait_until(lambda: not runner_pids(budget_daemon))
    assert ps(budget_daemon)["models"] == []
