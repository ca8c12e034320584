"""The daemon's lifecycle with real runners (SIGTERM mid-answer, kill -9, SIGHUP); its access log and /metrics in-process."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemons import Daemon, runner_pids, start_daemon
from tests.support.polling import wait_until
from tests.support.unixhttp import Stream
from r1.daemon.metrics import Metrics
from tests.support.tinymodels import write_endless_gguf

# Tens of seconds of tokens from a tiny model that never ends an answer by itself.
LONG = {"model": "endless", "prompt": "Go on and on", "raw": True,
        "options": {"num_ctx": 32768, "num_predict": 30000, "temperature": 0}}


def gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.1)
    return False


def with_endless(env: dict[str, str], tmp_path: Path, **extra: str) -> Daemon:
    daemon = start_daemon({**env, **extra}, tmp_path / "daemon.log")
    daemon.cli("import", str(write_endless_gguf(tmp_path / "endless.gguf")), "--name", "endless")
    return daemon


def test_sigterm_mid_answer_cancels_within_the_grace_and_stops_runners(daemon_env: dict[str, str], tmp_path: Path) -> None:
    daemon = with_endless(daemon_env, tmp_path, R1_SHUTDOWN_GRACE="1s")
    stream = Stream(daemon.socket, "/api/generate", LONG)
    assert stream.status == 200
    lines = iter(stream)
    assert next(lines)["done"] is False
    runners = runner_pids(daemon)
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=20) == 0, daemon.log()
    assert time.monotonic() - started < 10  # 30000 tokens would take more than a minute
    stream.close()
    assert gone(runners) and not daemon.socket.exists()
    assert "requests in flight have 1 s to finish" in daemon.log()


def test_kill_9_of_the_daemon_leaves_no_runner(daemon_env: dict[str, str], tmp_path: Path) -> None:
    daemon = with_endless(daemon_env, tmp_path)
    stream = Stream(daemon.socket, "/api/generate", LONG)
    assert stream.status == 200 and next(iter(stream))["done"] is False
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
        wait_until(log_file.exists, timeout=5)
        daemon.request("GET", "/api/tags")
        assert "log file reopened" in log_file.read_text()
        assert "GET /api/tags 200" in log_file.read_text()
    finally:
        assert daemon.stop() == 0


async def test_each_request_is_logged_and_counted_in_metrics(make_api: Any, caplog: pytest.LogCaptureFixture) -> None:
    """In-process with scripted runners: the access log and the registry this test holds, as /metrics renders it."""
    metrics = Metrics()
    api = await make_api(metrics=metrics)
    await api.add_model("tiny")
    caplog.set_level(logging.INFO, logger="r1.access")
    generated = 0
    for _ in range(3):
        response = await api.client.post("/api/generate", json={
            "model": "tiny", "prompt": "hello", "raw": True, "stream": False, "options": {"num_predict": 3}})
        assert response.status == 200
        answer = await response.json()
        assert answer["response"] == "Hello, world" and answer["eval_count"] == 3
        generated += answer["eval_count"]
    assert (await api.client.post("/api/generate", json={"model": "nope", "prompt": "x"})).status == 404
    response = await api.client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}

    def sample(family: str, **labels: str) -> float:
        return sum(s.value for s in families[family].samples
                   if s.name.endswith(("_total", family)) and all(s.labels.get(k) == v for k, v in labels.items()))

    assert sample("r1_requests", route="/api/generate", status="200") == 3
    assert sample("r1_requests", route="/api/generate", status="404") == 1
    assert metrics.requests.values[(("route", "/api/generate"), ("status", "200"))] == 3  # the registry it rendered
    assert sample("r1_generated_tokens", model="tiny:latest") == generated == 9
    assert sample("r1_model_loads") == 1 and sample("r1_models_loaded") == 1 and len(api.runners.started) == 1
    assert sample("r1_memory_used_bytes") > 0 and sample("r1_memory_budget_bytes") > sample("r1_memory_used_bytes")
    first_token = next(s for s in families["r1_time_to_first_token_seconds"].samples if s.name.endswith("_count"))
    assert first_token.value == 3
    assert sample("r1_queue_depth") == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "r1.access"]
    answered = [line for line in lines if line.startswith("POST /api/generate 200 ")]
    assert len(answered) == 3 and all("model=tiny:latest" in line and "tokens=3" in line for line in answered)
    assert len([line for line in lines if line.startswith("POST /api/generate 404 ")]) == 1
    assert any(line.startswith("GET /metrics 200 ") for line in lines)
