"""/api/events (server-sent events of the daemon's state) and the console's page behind the TCP guard,
in-process; the page itself is tested in a browser in test_console.py."""

from __future__ import annotations

import http.client
import socket
import time
from typing import Any

from tests.support.daemons import Daemon
from tests.support.inprocess import InProcess


async def test_events_stream_ps_and_pulls_and_the_page_skips_only_the_key(make_api: Any) -> None:
    api: InProcess = await make_api(R1_API_KEY="k")  # the test server is on TCP: the guard applies
    page = await api.client.get("/ui")
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    assert (await api.client.get("/ui/console.js")).status == 200
    for other in ("/ui/__init__.py", "/ui/..%2F..%2Fpyproject.toml"):  # only the page's own files
        assert (await api.client.get(other, headers={"Authorization": "Bearer k"})).status == 404, other
    assert (await api.client.get("/api/events")).status == 401
    assert (await api.client.post("/ui", data=b"")).status in (401, 405)
    events = await api.client.get("/api/events", headers={"Authorization": "Bearer k"})
    assert events.headers["Content-Type"] == "text/event-stream"
    first = (await events.content.readuntil(b"\n\n")).decode()
    second = (await events.content.readuntil(b"\n\n")).decode()
    assert first.startswith("event: ps\ndata: ") and '"memory"' in first
    assert second == 'event: pulls\ndata: {"pulls": []}\n\n'
    events.close()


def test_an_open_event_stream_does_not_hold_the_shutdown(daemon: Daemon) -> None:
    """A console left open: on SIGTERM its stream ends at once, not after R1_SHUTDOWN_GRACE (10 s).
    (The page is on the socket too.)"""
    status, page = daemon.request("GET", "/ui")
    assert status == 200 and "<title>r1 console</title>" in page
    conn = http.client.HTTPConnection("localhost", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(str(daemon.socket))
    conn.request("GET", "/api/events")
    response = conn.getresponse()
    assert response.status == 200 and response.readline() == b"event: ps\n"
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 5
    response.read()  # the stream was ended, not cut
    conn.close()
