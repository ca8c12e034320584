"""Hypothesis throws JSON bodies at every POST route of the app, in-process with scripted runners: none may
answer 500 or log an unexpected error, and every refusal is a JSON error in its dialect's shape.

The routes come from the app's router, so a new route is fuzzed without a change here; the bodies
(tests/support/fuzzing.py) are the routes' valid bodies with odd values swapped in at any depth, or objects of
the field names their code reads; a sweep puts each of a few odd values in every place of every valid body.
Derandomized and bounded (1,500 bodies, and the sweep's 1,900, in about 15 s): CI sees the same ones every run."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientTimeout, web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fuzzing import MODELS, body_for, dialect_error, odd_values, route_words, swept, valid_bodies
from r1.daemon.api.http import MAX_JSON_DEPTH
from r1.daemon.app import create_app
from r1.daemon.config import Settings
from r1.daemon.store import Store
from tests.support.scripted import ScriptedRunners
from tests.support.tinymodels import TOOL_TEMPLATE, write_tiny_gguf
from tests.support.toolstores import ollama_store

INTERNAL = "internal error in the r1 daemon"
IN_BAND_ERRORS = ('{"error": "', '"error": {"message"', "event: error")  # how each dialect ends a stream early
BLOB = "/api/blobs/sha256:" + "0" * 64


def post_routes(app: web.Application) -> dict[str, str]:
    """Every POST route of the app (its path variables filled in) and the module of its handler."""
    return {route.resource.canonical.replace("{digest}", BLOB.rsplit("/", 1)[1]): route.handler.__module__
            for route in app.router.routes() if route.method == "POST" and route.resource is not None}


class Unexpected(logging.Handler):
    """Collects what r1 logs at ERROR: an unexpected exception anywhere, in a stream too."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


@contextmanager
def app_client(tmp: Path, loop: asyncio.AbstractEventLoop) -> Iterator[tuple[TestClient, web.Application]]:
    """The app on a test server over a store with MODELS, scripted runners, no way to the Hub."""
    settings_ = Settings.from_env({**os.environ, "R1_HOME": str(tmp / "home"), "HF_HUB_OFFLINE": "1"})
    store = Store(settings_.home)
    store.open()
    app = create_app(settings_, store, start=ScriptedRunners(["Hello", " there"]).start)

    async def start() -> TestClient:
        client = TestClient(TestServer(app), timeout=ClientTimeout(total=20))
        await client.start_server()
        for name, template in zip(MODELS, (None, TOOL_TEMPLATE)):
            path = write_tiny_gguf(tmp / f"{name}.gguf", **({"chat_template": template} if template else {}))
            response = await client.post("/api/import", json={"path": str(path), "model": name, "stream": False})
            assert response.status == 200, await response.text()
        return client

    client = loop.run_until_complete(start())
    try:
        yield client, app
    finally:
        loop.run_until_complete(client.close())
        store.close()


LOOK_UPS = ("/api/ps", "/api/tags", "/v1/models", "/api/remotes", "/api/usage", "/api/log", "/api/catalog")


def assert_look_ups_answer(loop: asyncio.AbstractEventLoop, client: TestClient) -> None:
    """What the bodies left behind (a model kept for 10**30 seconds, a remote, a copy) breaks no listing."""
    for path in LOOK_UPS:
        response = loop.run_until_complete(client.get(path))
        assert response.status == 200, (path, loop.run_until_complete(response.text()))


async def answer(client: TestClient, path: str, body: dict[str, Any] | str) -> tuple[int, str, str]:
    async with client.post(path, data=body if isinstance(body, str) else json.dumps(body)) as response:
        return response.status, response.content_type, await response.text()


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[tuple[asyncio.AbstractEventLoop, TestClient, web.Application, Unexpected]]:
    """An event loop of the test's own (hypothesis drives it example by example), the app's client, and what
    r1 logs at ERROR meanwhile."""
    loop = asyncio.new_event_loop()
    unexpected = Unexpected()
    logging.getLogger("r1").addHandler(unexpected)
    try:
        with app_client(tmp_path, loop) as (client, app):
            yield loop, client, app, unexpected
    finally:
        logging.getLogger("r1").removeHandler(unexpected)
        loop.close()


def valid_for(tmp: Path) -> dict[str, list[dict[str, Any]]]:
    if not (tmp / "ollama").exists():
        ollama_store(tmp / "ollama")
    return valid_bodies(write_tiny_gguf(tmp / "to-import.gguf", seed=7), tmp / "ollama")


def test_the_valid_bodies_are_valid(fuzzed: Any, tmp_path: Path) -> None:
    """What the fuzz mutates gets past every check, or mutating it would test little."""
    loop, client, app, unexpected = fuzzed
    for path, bodies in valid_for(tmp_path).items():
        assert path in post_routes(app), path
        for body in bodies:
            status, _, text = loop.run_until_complete(answer(client, path, body))
            assert status == 200 and not any(mark in text for mark in IN_BAND_ERRORS), (path, status, text[:300])
    assert not unexpected.records


def test_no_json_body_on_any_post_route_gets_a_500(fuzzed: Any, tmp_path: Path) -> None:
    loop, client, app, unexpected = fuzzed
    routes = post_routes(app)
    assert {"/api/chat", "/v1/chat/completions", "/v1/messages", "/v1/responses", "/api/create", BLOB} <= set(routes)
    valid = valid_for(tmp_path)
    plans = {}
    for path, module in sorted(routes.items()):
        fields, words = route_words(module)
        plans[path] = (valid.get(path, []), fields, odd_values(fields, words))

    @settings(max_examples=1500, deadline=timedelta(seconds=10), derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def post(data: st.DataObject) -> None:
        unexpected.records.clear()  # each example answers for its own
        rng = data.draw(st.randoms(use_true_random=True), label="rng")  # even picks of routes and places (seeded)
        path = rng.choice(sorted(plans))
        body = body_for(data, rng, *plans[path])
        status, kind, text = loop.run_until_complete(answer(client, path, body))
        assert status != 500 and INTERNAL not in text, (path, body, status, text[:500])
        assert not unexpected.records, (path, body, unexpected.records)
        if 400 <= status < 500:
            assert kind == "application/json", (path, body, status, text[:500])
            assert dialect_error(path, json.loads(text)), (path, body, text[:500])

    post()
    assert_look_ups_answer(loop, client)


def test_no_odd_value_anywhere_in_a_valid_body_gets_a_500(fuzzed: Any, tmp_path: Path) -> None:
    """Every value of every valid body, at any depth, swapped in turn for each of fuzzing.ODD: the sweep that
    finds a list where a field's check hashes a string (`reasoning_effort: [1]`), before hypothesis looks."""
    loop, client, _, unexpected = fuzzed
    for path, bodies in valid_for(tmp_path).items():
        for body in bodies:
            for where, changed in swept(body):
                status, kind, text = loop.run_until_complete(answer(client, path, changed))
                assert status != 500 and INTERNAL not in text, (path, where, status, text[:300])
                assert not unexpected.records, (path, where, unexpected.records)
                if 400 <= status < 500:
                    assert kind == "application/json" and dialect_error(path, json.loads(text)), (path, where, text)
    assert_look_ups_answer(loop, client)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 5000])
def test_the_depth_limit_is_where_it_says(fuzzed: Any, depth: int) -> None:
    """A body nested exactly MAX_JSON_DEPTH deep passes the door; one level more, or thousands (a
    RecursionError in the parser before), is a 400 naming the limit."""
    loop, client, _, _ = fuzzed
    chat = '"model": "tiny", "stream": false, "messages": [{"role": "user", "content": "hi"}]'
    raw = f'{{{chat}, "metadata": {"[" * (depth - 1)}{"]" * (depth - 1)}}}'  # the body's own object is a level
    status, _, text = loop.run_until_complete(answer(client, "/api/chat", raw))
    if depth == MAX_JSON_DEPTH:
        assert status == 200, text
    else:
        assert status == 400 and f"more than {MAX_JSON_DEPTH} levels" in json.loads(text)["error"], text
