"""The TCP listener: same API, guarded by Host, Origin and API key; the socket's own modes."""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import R1, Daemon, start_daemon


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tcp(port: int, method: str, path: str, headers: dict[str, str] | None = None,
        body: Any = None) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    answer: Any = data.decode()
    if response.getheader("Content-Type", "").startswith("application/json"):
        answer = json.loads(data)
    return response.status, dict(response.getheaders()), answer


@pytest.fixture
def tcp_daemon(daemon_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    port = free_port()
    extra = getattr(request, "param", {})
    daemon = start_daemon({**daemon_env, "R1_HOST": f"127.0.0.1:{port}", **extra}, tmp_path / "daemon.log")
    yield daemon, port
    assert daemon.stop() == 0, daemon.log()


def test_the_same_api_answers_over_tcp(tcp_daemon: tuple[Daemon, int]) -> None:
    daemon, port = tcp_daemon
    status, _, answer = tcp(port, "GET", "/api/version")
    assert status == 200 and answer == daemon.request("GET", "/api/version")[1]
    status, _, answer = tcp(port, "POST", "/api/show", body={"model": "nope"})
    assert status == 404 and "not found" in answer["error"]


def test_foreign_host_names_are_refused(tcp_daemon: tuple[Daemon, int]) -> None:
    _, port = tcp_daemon
    status, _, answer = tcp(port, "GET", "/api/tags", {"Host": "evil.example:11434"})
    assert status == 403 and "DNS rebinding" in answer["error"]
    for host in ("localhost:11434", "127.0.0.1", "[::1]:8080", "192.168.1.20:11434"):
        assert tcp(port, "GET", "/api/tags", {"Host": host})[0] == 200, host


@pytest.mark.parametrize("tcp_daemon", [{"R1_ORIGINS": "app://*"}], indirect=True)
def test_browser_origins_need_to_be_allowed(tcp_daemon: tuple[Daemon, int]) -> None:
    _, port = tcp_daemon
    status, _, answer = tcp(port, "GET", "/api/tags", {"Origin": "https://evil.example"})
    assert status == 403 and "R1_ORIGINS" in answer["error"]
    status, headers, _ = tcp(port, "GET", "/api/tags", {"Origin": "http://localhost:3000"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    status, headers, _ = tcp(port, "GET", "/api/tags", {"Origin": "app://obsidian.md"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "app://obsidian.md"
    status, headers, _ = tcp(port, "OPTIONS", "/api/chat", {"Origin": "http://127.0.0.1:5173",
                                                             "Access-Control-Request-Method": "POST"})
    assert status == 204 and "POST" in headers["Access-Control-Allow-Methods"]


@pytest.mark.parametrize("tcp_daemon", [{"R1_API_KEY": "s3cret"}], indirect=True)
def test_an_api_key_is_checked_on_every_tcp_request_but_not_on_the_socket(tcp_daemon: tuple[Daemon, int]) -> None:
    daemon, port = tcp_daemon
    status, headers, answer = tcp(port, "GET", "/api/tags")
    assert status == 401 and "R1_API_KEY" in answer["error"] and headers["WWW-Authenticate"] == "Bearer"
    assert tcp(port, "GET", "/api/tags", {"Authorization": "Bearer wrong"})[0] == 401
    status, _, answer = tcp(port, "GET", "/v1/models", {"Authorization": "Basic s3cret"})
    assert status == 401 and answer["error"]["type"] == "authentication_error"  # OpenAI's shape on /v1
    assert tcp(port, "GET", "/api/tags", {"Authorization": "Bearer s3cret"})[0] == 200
    assert daemon.request("GET", "/api/tags")[0] == 200


def test_a_non_loopback_bind_without_a_key_does_not_start(daemon_env: dict[str, str]) -> None:
    env = {**daemon_env, "R1_HOST": f"0.0.0.0:{free_port()}"}
    result = subprocess.run([R1, "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "R1_API_KEY" in result.stderr
    assert not Path(env["R1_SOCKET"]).exists()


def test_socket_mode_for_a_group(daemon_env: dict[str, str], tmp_path: Path) -> None:
    daemon = start_daemon({**daemon_env, "R1_SOCKET_MODE": "0660"}, tmp_path / "daemon.log")
    try:
        assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o660
    finally:
        daemon.stop()
