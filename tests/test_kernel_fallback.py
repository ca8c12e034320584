"""r1 answers on every machine: llama.cpp kernels that crash at load, runners that die while idle.

The crash is played by tests/support/crashing_llama (on PYTHONPATH): the real llama-cpp-python, whose
first decode kills the process with SIGSEGV when the model was loaded with extra buffer types
on, as native builds do on some AMX Xeons. This machine may or may not have AMX; the double
makes the test the same on both. The double crashes whatever the model: the tiny GGUF loads fastest.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import Daemon, private_daemon, runner_pids
from tests.support.tinymodels import write_tiny_gguf

DOUBLE = str(Path(__file__).parent / "support" / "crashing_llama")
ASK = {"model": "tiny", "prompt": "The capital of France is", "raw": True, "stream": False,
       "options": {"temperature": 0, "num_predict": 4}}
WARNING = "crashed while loading"


def with_double(**env: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [DOUBLE, os.environ.get("PYTHONPATH")])), **env}


def ask(daemon: Daemon, model: str = "tiny", **options: Any) -> tuple[int, dict[str, Any]]:
    return daemon.request("POST", "/api/generate", {**ASK, "model": model, "options": {**ASK["options"], **options}})


def with_tiny(daemon: Daemon, root: Path) -> Daemon:
    daemon.cli("import", str(write_tiny_gguf(root / "tiny.gguf")), "--name", "tiny")
    return daemon


def loaded(daemon: Daemon) -> list[dict[str, Any]]:
    status, answer = daemon.request("GET", "/api/ps")
    assert status == 200
    return answer["models"]


def test_a_kernel_crash_at_load_falls_back_answers_and_is_remembered(tmp_path: Path) -> None:
    with private_daemon(tmp_path, **with_double()) as daemon:
        with_tiny(daemon, tmp_path)
        status, answer = ask(daemon)
        assert status == 200, answer
        assert answer["eval_count"] == 4 and answer["response"]
        log = daemon.log()
        assert log.count(WARNING) == 1 and "was killed by SIGSEGV" in log and "issue 20824" in log
        [model] = loaded(daemon)
        assert model["extra_buffers"] is False
        table = daemon.cli("ps").stdout
        assert "100% CPU*" in table and "without llama.cpp's extra buffer types" in table
        # Another instance (another num_thread) loads straight in the safe mode: no second crash.
        status, _ = ask(daemon, num_thread=1)
        assert status == 200
        assert daemon.log().count("loading it again without extra buffers") == 1
        assert all(m["extra_buffers"] is False for m in loaded(daemon)) and len(loaded(daemon)) == 2
    # A restarted daemon remembers it from the store.
    with private_daemon(tmp_path, **with_double()) as daemon:
        before = daemon.log().count(WARNING)
        status, answer = ask(daemon)
        assert status == 200, answer
        assert daemon.log().count(WARNING) == before and "extra buffer types stay off" in daemon.log()
        assert [m["extra_buffers"] for m in loaded(daemon)] == [False]


def test_forced_on_the_crash_is_the_answer_and_says_what_happened(tmp_path: Path) -> None:
    with private_daemon(tmp_path, **with_double(R1_LLAMA_EXTRA_BUFFERS="on")) as daemon:
        with_tiny(daemon, tmp_path)
        status, answer = ask(daemon)
        assert status == 500
        assert "tiny:latest stopped: was killed by SIGSEGV" in answer["error"]
        assert "ggml_backend_amx_mul_mat" in answer["error"]  # the runner's last words
        assert WARNING not in daemon.log() and loaded(daemon) == []


def test_off_loads_without_extra_buffers_and_the_estimate_drops_the_repacked_copy(tmp_path: Path, gemma_path: Path) -> None:
    # Gemma: x86 CPUs repack some of its weights (Q4_K), so the two estimates differ.
    estimates = {}
    for mode in ("auto", "off"):  # two daemons, one after the other, over the same store
        with private_daemon(tmp_path, R1_LLAMA_EXTRA_BUFFERS=mode) as daemon:
            if mode == "auto":
                daemon.cli("import", str(gemma_path), "--name", "gemma")
                with_tiny(daemon, tmp_path)
            status, shown = daemon.request("POST", "/api/show", {"model": "gemma"})
            estimates[mode] = shown["memory"]
            model = "gemma" if mode == "auto" else "tiny"
            status, answer = ask(daemon, model)
            assert status == 200, answer
            [loaded_model] = loaded(daemon)
            # auto: on, unless this machine's llama.cpp really crashed with them (an AMX Xeon) and fell back.
            assert loaded_model["extra_buffers"] is (mode == "auto" and WARNING not in daemon.log())
            if mode == "auto":
                assert loaded_model["size"] < 1.25 * shown["memory"]["estimate"]  # measured against estimated
    assert estimates["off"]["repacked"] == 0
    assert estimates["auto"]["estimate"] - estimates["auto"]["repacked"] == estimates["off"]["estimate"]


def test_a_runner_killed_while_idle_is_replaced_by_the_next_request(tmp_path: Path) -> None:
    with private_daemon(tmp_path) as daemon:
        with_tiny(daemon, tmp_path)
        assert ask(daemon)[0] == 200
        [pid] = runner_pids(daemon)
        os.kill(pid, signal.SIGKILL)  # the OOM killer, between requests
        status, answer = ask(daemon)  # sent at once: the daemon may not have seen the death yet
        assert status == 200, answer
        assert answer["eval_count"] == 4
        assert runner_pids(daemon) != [pid] and len(loaded(daemon)) == 1


async def test_a_killed_runner_answers_no_ping_and_says_how_it_ended(tmp_path: Path) -> None:
    from r1.daemon.scheduler.runner_client import Runner, RunnerDied

    runner = await Runner.start("tiny", "gguf", write_tiny_gguf(tmp_path / "tiny.gguf"), {"num_ctx": 256}, "INFO")
    assert await runner.call("ping") == {}
    os.kill(runner.pid, signal.SIGKILL)
    assert runner.alive  # nothing has told the event loop yet
    with pytest.raises(RunnerDied) as died:
        await runner.call("ping")
    assert died.value.returncode == -signal.SIGKILL and died.value.death.startswith("was killed by SIGKILL")
    await runner.exited
    assert not runner.alive
    await runner.stop()
