"""Hostile remote engines and hostile pages: an upstream that echoes the daemon's secrets back (in any
letter case, a custom header's too), one that sends lines that are not JSON or too long, one that counts
no tokens; a validation error that quotes what the client sent; browser origins and CORS preflights on
TCP; small downloads that a server refuses."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.daemons import Daemon, private_daemon
from tests.support.fakeupstream import HOSTILE, TEXT, FakeUpstream
from tests.support.inprocess import InProcess
from tests.support.loopback import free_port
from tests.support.polling import wait_until

from r1.daemon.errors import NotFound
from r1.daemon.intake.pull.transfer import TransferError, get_bytes
from r1.daemon.redact import header_secrets, masked_url, redact, remember, url_secrets

KEY = "sk-Hostile-Key-5e4d3c2b1a"
HEADER_SECRET = "Hdr-Secret-0a9b8c7d"
SECRETS = sorted({case(secret) for secret in (KEY, HEADER_SECRET)
                  for case in (str, str.upper, str.lower, str.swapcase)})
# Each dialect's generation routes: (path, extra body fields).
DIALECTS = [("/api/chat", {}), ("/v1/chat/completions", {}), ("/v1/messages", {"max_tokens": 16})]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[Daemon]:
    # DEBUG: the most the log can say, so the most it could leak.
    with private_daemon(tmp_path_factory.mktemp("hostile"), FAKE_KEY=KEY, R1_LOG_LEVEL="DEBUG") as daemon:
        daemon.cli("remote", "add", "hostile", upstream.url + "/v1", "--api-key-env", "FAKE_KEY",
                   "--header", f"X-Api-Key={HEADER_SECRET}")
        for model in (*HOSTILE, "no-usage"):
            daemon.cli("create", f"h-{model}", "--from", f"hostile:{model}")
        yield daemon


def post(daemon: Daemon, path: str, body: dict[str, Any]) -> tuple[int, str]:
    """The status and the body as text, streamed or not (a JSON body written back as text)."""
    status, answer = daemon.request("POST", path, body, timeout=30)
    return status, answer if isinstance(answer, str) else json.dumps(answer)


def ask(daemon: Daemon, path: str, model: str, stream: bool, **extra: Any) -> tuple[int, str]:
    return post(daemon, path, {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}],
                               **extra})


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def logged_rows(daemon: Daemon, model_prefix: str, at_least: int) -> list[dict[str, Any]]:
    """/api/log's rows of the models named so, once at least `at_least` are written (the writer batches
    every half second)."""
    rows: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal rows
        rows = [row for row in daemon.request("GET", "/api/log?limit=1000")[1]["requests"]
                if (row["model"] or "").startswith(model_prefix)]
        return len(rows) >= at_least

    wait_until(enough, timeout=10)
    return rows


def test_an_upstream_that_echoes_secrets_gets_none_of_them_anywhere(daemon: Daemon, upstream: FakeUpstream) -> None:
    answers = {}
    for model in ("echo-upper", "echo-lower", "echo-headers", "echo-midstream"):
        for path, extra in DIALECTS:
            for stream in (False, True):
                status, text = ask(daemon, path, f"h-{model}", stream, **extra)
                answers[model, path, stream] = text
                assert status in (400, 502) or (stream and status == 200), (model, path, stream, status, text)
                assert "remote hostile" in text and "***" in text, text  # the echo arrived, masked
                assert leaked(text) == [], (model, path, stream, text)
        for path in ("/api/embed", "/v1/embeddings"):
            status, text = post(daemon, path, {"model": f"h-{model}", "input": "hi"})
            answers[model, path, False] = text
            assert status in (400, 502) and "remote hostile" in text and leaked(text) == [], (model, path, text)
    sent = [r for r in upstream.requests if r.method == "POST"]
    assert sent and all(r.headers["Authorization"] == f"Bearer {KEY}" and r.headers["X-Api-Key"] == HEADER_SECRET
                        for r in sent)  # what was echoed held the secrets
    assert "BEARER ***" in answers["echo-upper", "/api/chat", False]
    rows = logged_rows(daemon, "h-echo-", len(answers))
    assert len(rows) == len(answers) and all(row["error_text"] for row in rows)
    assert leaked(json.dumps(daemon.request("GET", "/api/log?limit=1000")[1])) == []
    with sqlite3.connect(daemon.home / "r1.db") as db:
        table = db.execute("SELECT * FROM requests").fetchall()
    assert len(table) >= len(answers) and leaked(json.dumps(table)) == []
    log = daemon.log()
    assert "h-echo-midstream" in log and leaked(log) == []


@pytest.mark.unit
def test_the_redactor_masks_whole_secrets_in_any_case_and_leaves_short_values() -> None:
    headers = {"Authorization": "Basic dXNlcjpVbml0LVNlY3JldA==", "X-Cache": "true", "X-Org": "org-Unit-Org-42"}
    remember(header_secrets(headers) | url_secrets("https://u:Unit-Pass-1234@h/v1?api-version=2024&key=Unit-Q-5678"))
    text = ("basic DXNLCJPVBML0LVNLY3JLDA== / dXNlcjpVbml0LVNlY3JldA== / ORG-UNIT-ORG-42 / unit-pass-1234 / "
            "UNIT-Q-5678 / x-cache: true / api-version=2024")
    assert redact(text) == "*** / *** / *** / *** / *** / x-cache: true / api-version=2024"
    assert masked_url("https://u:Unit-Pass-1234@h/v1?key=Unit-Q-5678") == "https://u:***@h/v1?key=***"


def test_a_url_with_a_password_never_shows_it(daemon: Daemon) -> None:
    password = "Pa55word-url-9z8y"
    url = f"http://someone:{password}@127.0.0.1:{free_port()}/v1?api-key=Query-Secret-77"
    daemon.cli("remote", "add", "userinfo", url)
    listed = daemon.cli("remote", "list", "--json").stdout
    failed = daemon.cli("remote", "models", "userinfo", check=False)
    assert failed.returncode == 1 and "cannot be reached" in failed.stderr
    for text in (listed, failed.stderr, daemon.log()):
        assert password not in text and "Query-Secret-77" not in text
    assert "someone:***@127.0.0.1" in listed


@pytest.mark.parametrize("model, why", [("garbage-first", "not JSON"), ("garbage-late", "not JSON"),
                                        ("huge-first", "a line over 512 KiB"), ("huge-late", "a line over 512 KiB")])
def test_an_answer_r1_cannot_read_is_a_502_naming_the_remote(daemon: Daemon, model: str, why: str) -> None:
    status, text = post(daemon, "/api/embed", {"model": f"h-{model}", "input": "hi"})
    assert status == 502 and "remote hostile sent an answer r1 cannot read" in text, text
    for path, extra in DIALECTS:
        status, text = ask(daemon, path, f"h-{model}", False, **extra)
        assert status == 502 and "remote hostile sent an answer r1 cannot read" in text and why in text, text
        status, text = ask(daemon, path, f"h-{model}", True, **extra)
        if model.endswith("-first"):  # nothing was sent yet: the status says it
            assert status == 502 and why in text, text
        else:  # the first chunk went out with a 200: the error comes in band, after it
            assert status == 200 and text.index(TEXT.split()[0]) < text.index(why), text
            assert "remote hostile" in text
    log = daemon.log()
    assert " ERROR " not in log and "internal error in the r1 daemon" not in log


def test_an_upstream_that_counts_no_tokens_leaves_the_prompt_and_cost_unknown(daemon: Daemon) -> None:
    daemon.cli("remote", "price", "h-no-usage", "--input", "1", "--output", "2")
    status, text = ask(daemon, "/api/chat", "h-no-usage", False)
    answer = json.loads(text)
    assert status == 200 and answer["message"]["content"] == TEXT
    # No prompt count rather than a 0, no cost rather than one computed from a 0, and the answer says so.
    assert "prompt_eval_count" not in answer and "cost" not in answer and answer["tokens_counted_by_r1"] is True
    assert answer["eval_count"] == len(TEXT.split())  # the parts r1 counted
    status, text = ask(daemon, "/api/chat", "h-no-usage", True)
    final = json.loads(text.splitlines()[-1])
    assert status == 200 and final["done"] and "prompt_eval_count" not in final and "cost" not in final
    rows = logged_rows(daemon, "h-no-usage", 2)
    assert all(row["status"] == 200 and row["prompt_tokens"] is None and row["cost"] is None for row in rows)
    ran = daemon.cli("run", "h-no-usage", "hi", "--verbose")
    assert "counted by r1" in ran.stderr and "prompt eval rate" not in ran.stderr


# --- prompt text in the request log (in-process) ---------------------------------------------------

PRIVATE = "my private words, quoted back"


async def _error_rows(api: InProcess) -> list[dict[str, Any]]:
    await api.add_model("m")
    response = await api.client.post("/api/chat", json={"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                       "format": PRIVATE})
    assert response.status == 400 and PRIVATE in (await response.json())["error"]  # the client is told
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = (await (await api.client.get("/api/log?limit=100")).json())["requests"]
        if any(row["route"] == "/api/chat" for row in rows):
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError("the request was not logged")


async def test_a_validation_error_keeps_the_clients_words_out_of_the_request_log(make_api: Any) -> None:
    rows = await _error_rows(await make_api())
    [row] = [row for row in rows if row["route"] == "/api/chat"]
    assert row["status"] == 400 and row["error_text"] == "400 Bad Request"
    assert PRIVATE not in json.dumps(rows)


async def test_with_r1_log_prompts_the_error_keeps_its_words(make_api: Any) -> None:
    rows = await _error_rows(await make_api(R1_LOG_PROMPTS="1"))
    [row] = [row for row in rows if row["route"] == "/api/chat"]
    assert row["status"] == 400 and PRIVATE in row["error_text"]


# --- origins and CORS on TCP (in-process: aiohttp's test server listens on loopback TCP) -------------

# The headers the OpenAI and Anthropic JavaScript SDKs add (their src/client.ts buildHeaders and
# src/internal/detect-platform.ts; helpers and pollers add the last ones).
SDK_HEADERS = ["x-stainless-lang", "x-stainless-package-version", "x-stainless-os", "x-stainless-arch",
               "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-retry-count", "x-stainless-timeout",
               "x-stainless-helper-method", "x-stainless-helper", "x-stainless-poll-helper",
               "x-stainless-custom-poll-interval", "anthropic-version", "anthropic-beta",
               "anthropic-dangerous-direct-browser-access", "openai-organization", "openai-project",
               "authorization", "x-api-key", "content-type", "accept"]


async def test_origins_match_as_written_not_as_character_classes(make_api: Any) -> None:
    api = await make_api(R1_ORIGINS="http://[fe80::1]:*")
    for origin, status in (("http://[::1]:8080", 200), ("http://[::1]", 200), ("https://[::1]:5173", 200),
                           ("http://127.0.0.1:3000", 200), ("http://1:5", 403), ("http://::5", 403),
                           ("http://[fe80::1]:80", 200), ("http://f:80", 403), ("http://e:80", 403)):
        response = await api.client.get("/api/tags", headers={"Origin": origin})
        assert response.status == status, origin


async def test_a_preflight_for_the_sdks_headers_passes(make_api: Any) -> None:
    api = await make_api(R1_API_KEY="s3cret")
    for path in ("/v1/chat/completions", "/v1/messages"):
        response = await api.client.options(path, headers={
            "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": ", ".join(SDK_HEADERS)})
        assert response.status == 204
        allowed = {name.strip().lower() for name in response.headers["Access-Control-Allow-Headers"].split(",")}
        assert [name for name in SDK_HEADERS if name not in allowed] == []


# --- small downloads --------------------------------------------------------------------------------

async def test_a_refused_small_download_gives_up_at_once(aiohttp_server: Any) -> None:
    asked: dict[int, int] = {}

    async def answer(request: web.Request) -> web.Response:
        status = int(request.match_info["status"])
        asked[status] = asked.get(status, 0) + 1
        if status == 503 and asked[status] > 1:  # busy once, then there
            return web.Response(body=b"the file")
        return web.Response(status=status, text="no")

    app = web.Application()
    app.router.add_get("/{status}", answer)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        for status, error in ((403, TransferError), (404, NotFound), (400, TransferError), (410, TransferError)):
            started = time.monotonic()
            with pytest.raises(error):
                await get_bytes(session, str(server.make_url(f"/{status}")), {}, 100)
            assert time.monotonic() - started < 0.2 and asked[status] == 1, status
        assert await get_bytes(session, str(server.make_url("/503")), {}, 100) == b"the file"
        assert asked[503] == 2
