"""HTTP to the daemon over its Unix socket, with the standard library only (fast to import)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DaemonUnavailable(Exception):
    """Nothing answers on the socket."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise DaemonUnavailable(self.socket_path) from exc
        self.sock = sock


def _error_message(status: int, raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"])
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace").strip() or f"HTTP {status}"


class Client:
    def __init__(self, socket_path: Path, timeout: float | None = None) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        conn = _UnixConnection(self.socket_path, self.timeout)
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        if response.status >= 400:
            raw = response.read()
            conn.close()
            raise ApiError(response.status, _error_message(response.status, raw))
        return conn, response

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call; the decoded JSON answer (None for an empty one)."""
        conn, response = self._send(method, path, body)
        try:
            raw = response.read()
        finally:
            conn.close()
        return json.loads(raw) if raw.strip() else None

    def stream(self, method: str, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """NDJSON events as they arrive; an in-band {"error"} line raises ApiError."""
        conn, response = self._send(method, path, body)
        try:
            for line in response:
                if not line.strip():
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise ApiError(500, str(event["error"]))
                yield event
        finally:
            conn.close()
