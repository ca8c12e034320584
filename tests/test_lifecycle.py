"""The daemon's lifecycle with real runners (SIGTERM mid-answer, kill -9, SIGHUP), its logs and /metrics."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from conftest import Daemon, start_daemon
from conftest import runner_pids
from test_generate import Stream
from tinymodels import write_tiny_gguf

LONG = {"model": "gemma", "prompt": "Count to a thousand: 1, 2,", "raw": True,
        "options": {"num_predict": 3000, "temperature": 0, "num_thread": 2}}


def gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.1)
    return False


def with_gemma(env: dict[str, str], tmp_path: Path, gemma_path: Path, **extra: str) -> Daemon:
    daemon = start_daemon({**env, **extra}, tmp_path / "daemon.log")
    daemon.cli("import", str(gemma_path), "--name", "gemma")
    return daemon


def test_sigterm_mid_answer_cancels_within_the_grace_and_stops_runners(
        daemon_env: dict[str, str], tmp_path: Path, gemma_path: Path) -> None:
    daemon = with_gemma(daemon_env, tmp_path, gemma_path, R1_SHUTDOWN_GRACE="1s")
    stream = Stream(daemon.socket, "/api/generate", LONG)
    lines = iter(stream)
    assert next(lines)["done"] is False
    runners = runner_pids(daemon)
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=20) == 0, daemon.log()
    assert time.monotonic() - started < 10  # 3000 tokens would take a minute
    stream.close()
    assert gone(runners) and not daemon.socket.exists()
    assert "requests in flight have 1 s to finish" in daemon.log()


def test_kill_9_of_the_daemon_leaves_no_runner(daemon_env: dict[str, str], tmp_path: Path, gemma_path: Path) -> None:
    daemon = with_gemma(daemon_env, tmp_path, gemma_path)
    stream = Stream(daemon.socket, "/api/generate", LONG)
    assert next(iter(stream))["done"] is False
    runners = runner_pids(daemon)
    assert runners
    daemon.process.kill()
    daemon.process.wait()
    stream.close()
    assert gone(runners, timeout=5), "a runner outlived its daemon"


def test_sighup_reopens_the_log_file(daemon_env: dict[str, str], tmp_path: Path) -> None:
    log_file = tmp_path / "r1.log"
    daemon = start_daemon({**daemon_env, "R1_LOG_FILE": str(log_file)}, tmp_path / "stderr.log")
    try:
        assert "listening on" in log_file.read_text()
        log_file.rename(tmp_path / "r1.log.1")  # what logrotate does
        daemon.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not log_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        daemon.request("GET", "/api/tags")
        assert "log file reopened" in log_file.read_text()
        assert "GET /api/tags 200" in log_file.read_text()
    finally:
        assert daemon.stop() == 0


def test_each_request_is_logged_and_counted_in_metrics(daemon: Daemon, tmp_path: Path) -> None:
    daemon.cli("import", str(write_tiny_gguf(tmp_path / "tiny.gguf")), "--name", "tiny")
    generated = answered = 0
    for _ in range(3):
        status, answer = daemon.request("POST", "/api/generate", {
            "model": "tiny", "prompt": "hello", "raw": True, "stream": False, "options": {"num_predict": 5}})
        assert status == 200
        generated += answer["eval_count"]
        answered += bool(answer["response"])  # a random model may end at once: no first token then
    assert daemon.request("POST", "/api/generate", {"model": "nope", "prompt": "x"})[0] == 404
    status, text = daemon.request("GET", "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def sample(family: str, **labels: str) -> float:
        return sum(s.value for s in families[family].samples
                   if s.name.endswith(("_total", family)) and all(s.labels.get(k) == v for k, v in labels.items()))

    assert sample("r1_requests", route="/api/generate", status="200") == 3
    assert sample("r1_requests", route="/api/generate", status="404") == 1
    assert sample("r1_generated_tokens", model="tiny:latest") == generated
    assert sample("r1_model_loads") == 1 and sample("r1_models_loaded") == 1
    assert sample("r1_memory_used_bytes") > 0 and sample("r1_memory_budget_bytes") > sample("r1_memory_used_bytes")
    first_token = next(s for s in families["r1_time_to_first_token_seconds"].samples if s.name.endswith("_count"))
    assert first_token.value == answered
    assert sample("r1_queue_depth") == 0
    log = daemon.log()
    assert "POST /api/generate 200" in log and "model=tiny:latest" in log and f"tokens={answer['eval_count']}" in log
    assert "POST /api/generate 404" in log
