"""Real `r1 serve` processes for end-to-end tests: started on a store and a short socket of their own,
driven with the real `r1` command or raw HTTP, stopped with SIGTERM (which must end them cleanly)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .unixhttp import unix_request

R1 = str(Path(sys.executable).with_name("r1"))
HF_NAME = "hf.co/acme/gemma-3-270m:Q4_K_M"  # the session daemon's Gemma again, under a Hugging Face name


@dataclass
class Daemon:
    process: subprocess.Popen
    socket: Path
    home: Path
    env: dict[str, str]
    log_path: Path
    port: int | None = None  # its TCP listener, when R1_HOST gave it one

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
    port = int(env["R1_HOST"].rsplit(":", 1)[1]) if env.get("R1_HOST") else None
    return Daemon(process, socket_path, Path(env["R1_HOME"]), env, log_path, port)


@contextlib.contextmanager
def private_daemon(root: Path, **env: str) -> Iterator[Daemon]:
    """A daemon of its own (store under `root`, a short socket path) for a module's fixture;
    stopped with SIGTERM afterwards, which must end it cleanly."""
    sock_dir = tempfile.mkdtemp(prefix="r1-", dir="/tmp")
    full_env = {**os.environ, "R1_HOME": str(root / "home"), "R1_SOCKET": f"{sock_dir}/r1.sock",
                "R1_NO_AUTOSTART": "1", "R1_NO_OLLAMA_REGISTRY": "1", **env}
    daemon = start_daemon(full_env, root / "daemon.log")
    try:
        yield daemon
        assert daemon.stop() == 0, daemon.log()
    finally:
        daemon.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


@contextlib.contextmanager
def over_socket(daemon: Daemon) -> Iterator[Any]:
    """An HTTP client over the daemon's Unix socket, for the official SDKs (openai 3.x and anthropic 2.x
    take an httpx2 client)."""
    import httpx2

    http = httpx2.Client(transport=httpx2.HTTPTransport(uds=str(daemon.socket)), timeout=120)
    try:
        yield http
    finally:
        http.close()


def runner_pids(daemon: Daemon) -> list[int]:
    """The daemon's live runner processes (an exited one not yet reaped does not count)."""
    pids = []
    for child in psutil.Process(daemon.process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "r1.daemon.runner" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:  # gone meanwhile
            pass
    return pids


def runner_pid(daemon: Daemon, model: str) -> int:
    """The pid of the runner serving `model` (its one loaded instance)."""
    status, answer = daemon.request("GET", "/api/ps")
    assert status == 200
    [pid] = [m["pid"] for m in answer["models"] if m["name"] == model]
    return pid
