"""HTTP over a daemon's Unix socket with nothing of r1's client in between: one request, or an NDJSON
stream read line by line."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def unix_request(socket_path: Path, method: str, path: str, body: Any = None, raw: bytes | None = None,
                 timeout: float = 30) -> tuple[int, Any]:
    """One HTTP request over the socket: the status and the body (parsed when it is JSON)."""

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


class Stream:
    """An NDJSON response read line by line, with the socket at hand to drop mid-stream."""

    def __init__(self, socket_path: Path, path: str, body: dict[str, Any], timeout: float = 120) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(socket_path))
        conn = http.client.HTTPConnection("localhost")
        conn.sock = self.sock
        conn.request("POST", path, body=json.dumps(body))
        self.response = conn.getresponse()
        self.status = self.response.status

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while line := self.response.readline():
            if line.strip():
                yield json.loads(line)

    def close(self) -> None:
        self.response.close()  # the socket's file descriptor closes only when its reader is closed too
        self.sock.close()
