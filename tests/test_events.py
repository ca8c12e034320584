"""/api/events (server-sent events of the daemon's state) and the console's page behind the TCP guard,
in-process; the page itself is tested in a browser in test_console.py."""

from __future__ import annotations

from typing import Any

from conftest import InProcess


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
