"""The TCP listener: same API, guarded by Host, Origin and API key; the socket's own modes.

The guard is tested in-process: aiohttp's test server listens on TCP loopback, so every request
goes through it as through the daemon's TCP listener. What needs the real listener (binding
R1_HOST beside the socket, refusing a non-loopback bind without a key, the socket's file mode)
runs `r1 serve`."""

from __future__ import annotations

import http.client
import json
import os
import stat
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.support.daemons import R1, start_daemon
from tests.support.inprocess import InProcess
from tests.support.loopback import free_port

MakeApi = Callable[..., Awaitable[InProcess]]


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


async def test_foreign_host_names_are_refused(api: InProcess) -> None:
    response = await api.client.get("/api/tags", headers={"Host": "evil.example:11434"})
    assert response.status == 403 and "DNS rebinding" in (await response.json())["error"]
    for host in ("localhost:11434", "127.0.0.1", "[::1]:8080", "192.168.1.20:11434", "app.localhost"):
        response = await api.client.get("/api/tags", headers={"Host": host})
        assert response.status == 200, host


async def test_more_host_names_can_be_allowed(make_api: MakeApi) -> None:
    api = await make_api(R1_ALLOWED_HOSTS="r1.lan, Box.Example")
    for host, status in (("r1.lan:11434", 200), ("box.example", 200), ("other.lan", 403)):
        response = await api.client.get("/api/tags", headers={"Host": host})
        assert response.status == status, host


async def test_browser_origins_need_to_be_allowed(make_api: MakeApi) -> None:
    api = await make_api(R1_ORIGINS="app://*")
    response = await api.client.get("/api/tags", headers={"Origin": "https://evil.example"})
    assert response.status == 403 and "R1_ORIGINS" in (await response.json())["error"]
    assert "Access-Control-Allow-Origin" not in response.headers
    for origin in ("http://localhost:3000", "app://obsidian.md", "https://127.0.0.1"):
        response = await api.client.get("/api/tags", headers={"Origin": origin})
        assert response.status == 200, origin
        assert response.headers["Access-Control-Allow-Origin"] == origin and response.headers["Vary"] == "Origin"
    response = await api.client.get("/api/tags")  # no Origin: no CORS headers
    assert response.status == 200 and "Access-Control-Allow-Origin" not in response.headers


async def test_a_cors_preflight_is_answered_before_the_key_is_asked_for(make_api: MakeApi) -> None:
    api = await make_api(R1_API_KEY="s3cret")
    response = await api.client.options("/api/chat", headers={"Origin": "http://127.0.0.1:5173",
                                                               "Access-Control-Request-Method": "POST"})
    assert response.status == 204
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:5173"
    response = await api.client.options("/api/chat", headers={"Origin": "https://evil.example",
                                                               "Access-Control-Request-Method": "POST"})
    assert response.status == 403


async def test_an_api_key_is_checked_on_every_tcp_request(make_api: MakeApi) -> None:
    api = await make_api(R1_API_KEY="s3cret")
    client = api.client
    response = await client.get("/api/tags")
    assert response.status == 401 and "R1_API_KEY" in (await response.json())["error"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await client.get("/api/tags", headers={"Authorization": "Bearer wrong"})).status == 401
    response = await client.get("/v1/models", headers={"Authorization": "Basic s3cret"})
    assert response.status == 401
    error = (await response.json())["error"]  # OpenAI's shape on /v1
    assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
    response = await client.get("/api/tags", headers={"Authorization": "Bearer wrong", "Origin": "http://localhost:3000"})
    assert response.status == 401 and response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert (await client.get("/api/tags", headers={"Authorization": "Bearer s3cret"})).status == 200
    assert (await client.get("/api/tags", headers={"Authorization": "bearer  s3cret "})).status == 200


async def test_streamed_answers_carry_their_cors_headers(api: InProcess) -> None:
    await api.add_model("tiny")
    origin = {"Origin": "http://localhost:8080"}
    response = await api.client.post("/api/generate", json={"model": "tiny", "prompt": "hi"}, headers=origin)
    assert response.status == 200 and response.content_type == "application/x-ndjson"
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    assert "".join(line["response"] for line in lines) == "Hello, world!" and lines[-1]["done"] is True
    response = await api.client.post("/v1/chat/completions", headers=origin, json={
        "model": "tiny", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status == 200 and response.content_type == "text/event-stream"
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"
    assert (await response.text()).endswith("data: [DONE]\n\n")


# --- the real listener -------------------------------------------------------------------------


def test_r1_host_listens_beside_the_socket_with_its_modes(daemon_env: dict[str, str], tmp_path: Path) -> None:
    """R1_HOST binds a TCP listener that needs the key; the socket needs none and has R1_SOCKET_MODE."""
    port = free_port()
    daemon = start_daemon({**daemon_env, "R1_HOST": f"127.0.0.1:{port}", "R1_API_KEY": "s3cret",
                           "R1_SOCKET_MODE": "0660"}, tmp_path / "daemon.log")
    try:
        key = {"Authorization": "Bearer s3cret"}
        status, _, answer = tcp(port, "GET", "/api/version", key)
        assert status == 200 and answer == daemon.request("GET", "/api/version")[1]
        status, _, answer = tcp(port, "POST", "/api/show", key, body={"model": "nope"})
        assert status == 404 and "not found" in answer["error"]
        status, headers, answer = tcp(port, "GET", "/api/tags")
        assert status == 401 and "R1_API_KEY" in answer["error"] and headers["WWW-Authenticate"] == "Bearer"
        assert tcp(port, "GET", "/api/tags", {**key, "Host": "evil.example"})[0] == 403
        assert daemon.request("GET", "/api/tags") == (200, {"models": []})  # the socket: no key, no guard
        mode = os.stat(daemon.socket).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_a_non_loopback_bind_without_a_key_does_not_start(daemon_env: dict[str, str]) -> None:
    env = {**daemon_env, "R1_HOST": f"0.0.0.0:{free_port()}"}
    result = subprocess.run([R1, "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "R1_API_KEY" in result.stderr
    assert not Path(env["R1_SOCKET"]).exists()
