"""CPU threads of llama.cpp runners: a num_thread option sets both counts (tokens and prompts, as in
Ollama), R1_NUM_THREAD stands in where a model or request sets none, and without either a runner
takes half the cores for tokens and all of them for prompts. Real runners on a tiny GGUF."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import private_daemon
from r1.daemon.config import ConfigError, Settings
from r1.daemon.scheduler.model_spec import ModelSpec
from r1.daemon.scheduler.scheduler import start_runner
from tests.support.tinymodels import write_tiny_gguf

CORES = os.cpu_count() or 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("threads") / "tiny.gguf")


def spec(path: Path, **load: Any) -> ModelSpec:
    return ModelSpec("tiny", "id-tiny", "weights-tiny", "gguf", path, tuple(sorted({"num_ctx": 256, **load}.items())))


@pytest.mark.parametrize(("load", "daemon_threads", "expected"), [
    ({}, 0, (max(1, CORES // 2), CORES)),  # nothing set: half the cores for tokens, all for prompts
    ({}, 3, (3, 3)),  # R1_NUM_THREAD
    ({"num_thread": 1}, 3, (1, 1)),  # the model's or request's option wins over R1_NUM_THREAD
])
async def test_a_runner_computes_with_the_threads_it_was_given(tiny: Path, load: dict[str, Any], daemon_threads: int,
                                                               expected: tuple[int, int]) -> None:
    runner = await start_runner(spec(tiny, **load), True, "INFO", threads=daemon_threads)
    try:
        assert tuple(runner.info["threads"]) == expected  # as llama.cpp's context reports them
    finally:
        await runner.stop()


@pytest.mark.unit
def test_r1_num_thread_is_a_count() -> None:
    assert Settings.from_env({"R1_NUM_THREAD": "2"}).num_thread == 2
    assert Settings.from_env({}).num_thread == 0
    with pytest.raises(ConfigError, match="R1_NUM_THREAD='two' must be a whole number from 0 to 1024"):
        Settings.from_env({"R1_NUM_THREAD": "two"})


def test_the_daemons_log_says_what_a_runner_computes_with(tmp_path: Path, tiny: Path) -> None:
    with private_daemon(tmp_path, R1_NUM_THREAD="1") as daemon:
        daemon.cli("import", str(tiny), "--name", "tiny")
        status, answer = daemon.request("POST", "/api/generate", {"model": "tiny", "prompt": "Hi", "raw": True,
                                                                  "stream": False, "options": {"num_predict": 1}})
        assert status == 200, answer
        assert "loaded tiny:latest in" in daemon.log() and "(threads: 1 for tokens, 1 for prompts)" in daemon.log()
