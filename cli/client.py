"""HTTP/1.1 to the daemon over its Unix socket, written on `socket` alone.

The standard library's http.client drags in email parsing and ssl (about 30 ms of a
CLI start that should stay well under 150 ms); the daemon's answers need far less:
a status line, headers, and a body sized by Content-Length, chunked, or ended by close.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from io import BufferedReader
from os import PathLike

MAX_HEADER_LINE = 65536


class DaemonUnavailable(Exception):
    """Nothing answers on the socket."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(502, f"unexpected answer from the r1 daemon: {message}")


class _Response:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file: BufferedReader = sock.makefile("rb")
        status_line = self._line()
        try:
            _version, status, _reason = (status_line.decode("latin-1").rstrip("\r\n") + " ").split(" ", 2)
            self.status = int(status)
        except ValueError:
            raise ProtocolError(f"bad status line {status_line[:80]!r}") from None
        self.headers: dict[str, str] = {}
        while (line := self._line()) not in (b"\r\n", b"\n"):
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line[:80]!r}")
            self.headers[name.strip().lower()] = value.strip()

    def _line(self) -> bytes:
        line = self.file.readline(MAX_HEADER_LINE)
        if not line:
            raise ProtocolError("the connection closed early")
        return line

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while size := int(self._line().split(b";")[0], 16):
                data = self.file.read(size)
                if len(data) < size:
                    raise ProtocolError("the connection closed inside a chunk")
                self._line()  # the CRLF after each chunk
                yield data
        elif "content-length" in self.headers:
            yield self.file.read(int(self.headers["content-length"]))
        else:
            while data := self.file.read1(65536):
                yield data

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def lines(self) -> Iterator[bytes]:
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from complete
        if pending:
            yield pending

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _error_message(status: int, raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"])
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace").strip() or f"HTTP {status}"


class Client:
    def __init__(self, socket_path: str | PathLike[str], timeout: float | None = None) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def _send(self, method: str, path: str, body: dict[str, object] | None) -> _Response:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise DaemonUnavailable(self.socket_path) from exc
        payload = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {len(payload)}\r\n"
        if payload:
            head += "Content-Type: application/json\r\n"
        try:
            sock.sendall(head.encode() + b"\r\n" + payload)
            response = _Response(sock)
        except BaseException:
            sock.close()
            raise
        if response.status >= 400:
            try:
                raise ApiError(response.status, _error_message(response.status, response.read()))
            finally:
                response.close()
        return response

    def request(self, method: str, path: str, body: dict[str, object] | None = None) -> object:
        """One call; the decoded JSON answer (None for an empty one)."""
        response = self._send(method, path, body)
        try:
            raw = response.read()
        finally:
            response.close()
        return json.loads(raw) if raw.strip() else None

    def version(self) -> str:
        """The r1 version of the daemon that answers (GET /api/version); "unknown" when it does not say."""
        answer = self.request("GET", "/api/version")
        return str(answer.get("r1_version", "unknown")) if isinstance(answer, dict) else "unknown"

    def stream(self, method: str, path: str, body: dict[str, object] | None = None) -> Iterator[dict[str, object]]:
        """NDJSON events as they arrive; an in-band {"error"} line raises ApiError."""
        response = self._send(method, path, body)
        try:
            for line in response.lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise ApiError(500, str(event["error"]))
                yield event
        finally:
            response.close()
