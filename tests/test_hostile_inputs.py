"""Hostile input (issue 25): each request that gave a 500 is a 4xx naming what was wrong, in its dialect's
error shape; a full disk is a 507 that says so on every route that writes, and /v1/responses still answers;
long file jobs run on a pool of their own, so look-ups never queue behind them."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import Daemon
from tests.support.fuzzing import dialect_error
from tests.support.inprocess import InProcess
from r1.daemon.api.http import MAX_JSON_DEPTH
from tests.support.tinymodels import TOOL_TEMPLATE, write_tiny_gguf

HI = [{"role": "user", "content": "hi"}]
DEEP = "[" * 1000 + "]" * 1000  # a RecursionError in json.loads before


@pytest.fixture
async def models(api: InProcess) -> InProcess:
    await api.add_model("tiny")
    await api.add_model("tooled", chat_template=TOOL_TEMPLATE)
    return api


async def refused(api: InProcess, path: str, body: Any, status: int = 400) -> str:
    """POST `body` (an object, or raw text) and expect `status` with an error in `path`'s dialect: its message."""
    data = body if isinstance(body, str) else json.dumps(body)
    response = await api.client.post(path, data=data)
    text = await response.text()
    assert response.status == status, text
    message = dialect_error(path, json.loads(text))
    assert message, text
    return message


@pytest.mark.parametrize("path", ["/api/chat", "/api/create", "/v1/chat/completions", "/v1/messages",
                                  "/v1/responses", "/api/remotes"])
async def test_deep_json_is_a_400_naming_the_limit(models: InProcess, path: str) -> None:
    message = await refused(models, path, '{"model": "tiny", "x": ' + DEEP + "}")
    assert f"more than {MAX_JSON_DEPTH} levels" in message
    # Parseable but past the limit: refused at the door too, before the runner frame, the log or a template.
    message = await refused(models, path, json.dumps({"model": "tiny", "x": json.loads("[" * 70 + "]" * 70)}))
    assert f"more than {MAX_JSON_DEPTH} levels" in message


@pytest.mark.parametrize("raw, says", [
    ('{"model": "tiny", "messages": [], "options": {"temperature": NaN}}', "NaN is not a JSON number"),
    ('{"model": "tiny", "messages": [], "keep_alive": Infinity}', "Infinity is not a JSON number"),
    ('{"model": "tiny", "messages": [], "options": {"top_p": 1e400}}', "1e400 is too large"),
    ('{"model": "tiny", "messages": [], "keep_alive": ' + "9" * 5000 + "}", "invalid JSON"),  # > 4300 digits
])
async def test_what_json_does_not_have_is_a_400(models: InProcess, raw: str, says: str) -> None:
    assert says in await refused(models, "/api/chat", raw)


@pytest.mark.parametrize("path, body, field", [
    ("/v1/chat/completions", {"messages": HI, "tool_choice": {"type": [1]}}, "tool_choice"),
    ("/v1/responses", {"input": "hi", "tool_choice": {"type": [1]}}, "tool_choice"),
    ("/v1/messages", {"max_tokens": 4, "messages": HI, "tool_choice": {"type": [1]}}, "tool_choice"),
    ("/v1/chat/completions", {"messages": HI, "reasoning_effort": [1]}, "reasoning_effort"),
    ("/v1/responses", {"input": "hi", "reasoning": {"effort": {"a": 1}}}, "reasoning.effort"),
    ("/v1/messages", {"max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": [1], "content": "x"}]}]}, "tool_use_id"),
    ("/v1/chat/completions", {"messages": [{"role": "tool", "tool_call_id": [1], "content": "x"}]}, "tool_call_id"),
    ("/v1/responses", {"input": [{"role": "user", "content": [{"type": [1]}]}]}, "input[0].content[0]"),
    ("/api/chat", {"messages": HI, "options": {"num_thread": 10**6}}, "num_thread"),  # a runner's SIGSEGV
    ("/api/chat", {"messages": HI, "options": {"num_batch": 10**11}}, "num_batch"),  # a runner's MemoryError
    ("/api/chat", {"messages": HI, "options": {"temperature": 10**400}}, "temperature"),  # no float holds it
    ("/api/import", {"path": "/" + "x" * 5000}, "path"),  # File name too long
    ("/api/import", {"from": "ollama", "dir": "/" + "x" * 5000}, "dir"),
    ("/api/remotes", {"name": "up", "urls": ["http://127.0.0.1:9"], "ca_file": "/" + "x" * 5000}, "ca_file"),
])
async def test_odd_field_values_are_a_400_naming_the_field(models: InProcess, path: str, body: dict[str, Any],
                                                           field: str) -> None:
    message = await refused(models, path, {"model": "tooled", **body})
    assert field in message
    assert not models.runners.started  # refused before any runner was asked


@pytest.mark.parametrize("query", ["limit=%C2%B2", "limit=" + "1" * 5000, "limit=-1", "limit=10001"])
async def test_log_limits_that_are_no_whole_number_are_a_400(api: InProcess, query: str) -> None:
    response = await api.client.get(f"/api/log?{query}")  # '²' passed str.isdigit() and failed int()
    assert response.status == 400 and "limit=" in (await response.json())["error"]


async def test_a_long_console_file_name_is_a_404(api: InProcess) -> None:
    response = await api.client.get("/ui/" + "a" * 5000 + ".js")  # OSError: File name too long, before
    assert response.status == 404 and "the console has no file" in (await response.json())["error"]
    assert (await api.client.get("/ui/console.js")).status == 200


@pytest.mark.parametrize("seconds", [10**30, -(10**400)])
async def test_a_keep_alive_past_any_timestamp_is_forever(models: InProcess, seconds: int) -> None:
    """/api/ps formats when a model expires: 10**30 seconds from now broke it for as long as the model stayed;
    a number of 400 digits is no float."""
    response = await models.client.post("/api/chat", json={"model": "tiny", "messages": HI, "stream": False,
                                                           "keep_alive": seconds})
    assert response.status == 200, await response.text()
    response = await models.client.get("/api/ps")
    assert response.status == 200, await response.text()
    assert [m["expires_at"] for m in (await response.json())["models"]] == ["2318-01-01T00:00:00Z"]


def test_tcp_ports_are_ascii_numbers_of_a_port(daemon: Daemon) -> None:
    """POST /api/tcp is for the Unix socket only: a real daemon. '²' passed isdigit(); 99999 overflowed bind()."""
    for host in ("127.0.0.1:²", "127.0.0.1:99999"):
        status, answer = daemon.request("POST", "/api/tcp", {"host": host})
        assert status == 400 and "loopback HOST:PORT" in answer["error"], answer
    assert "Traceback" not in daemon.log()


# --- a full disk -------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs of the test's own (the tests run as root), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root and CAP_SYS_ADMIN): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path, home: Path) -> Path:
    """Leave no byte free on `disk`; the store's write-ahead log emptied first, so every write needs new space."""
    with sqlite3.connect(home / "r1.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


DISK_FULL = "is full: free some space"


async def test_a_full_disk_is_a_507_that_says_so_and_loses_no_answer(make_api: Any, small_disk: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    api = await make_api(R1_HOME=str(small_disk / "home"))
    await api.add_model("tiny")
    filler = fill(small_disk, api.home)
    writes = [("/api/create", {"model": "made", "from": "tiny", "system": "Be brief.", "stream": False}),
              ("/api/copy", {"source": "tiny", "destination": "tiny-copy"}),
              ("/api/remotes", {"name": "up", "urls": ["http://127.0.0.1:9"], "api_key": "k"}),
              ("/api/remotes", {"name": "up", "urls": ["http://127.0.0.1:9"]})]
    for path, body in writes:
        assert DISK_FULL in await refused(api, path, body, status=507), path
    response = await api.client.post("/api/create", json={"model": "made", "from": "tiny", "system": "Be brief."})
    assert DISK_FULL in response_lines(await response.text())[-1]["error"]  # in the stream too
    for stream in (False, True):  # the answer comes back: only keeping it failed, and it says so
        response = await api.client.post("/v1/responses", json={"model": "tiny", "input": "hi", "store": True,
                                                                  "stream": stream})
        assert response.status == 200
        answer = final_response(await response.text()) if stream else await response.json()
        assert answer["status"] == "completed" and answer["output"][0]["content"][0]["text"] == "Hello, world!"
        assert answer["store"] is False
        assert (await api.client.get(f"/v1/responses/{answer['id']}")).status == 404
    assert "answered but not stored" in caplog.text and "disk holding the store is full" in caplog.text

    filler.unlink()  # room again: the writes that failed now work, and keep what they wrote
    for path, body in writes[1:]:
        response = await api.client.post(path, json=body)
        assert response.status == 200, await response.text()
    assert [r["name"] for r in (await (await api.client.get("/api/remotes")).json())["remotes"]] == ["up"]
    response = await api.client.post("/v1/responses", json={"model": "tiny", "input": "hi", "store": True})
    answer = await response.json()
    assert answer["store"] is True and (await api.client.get(f"/v1/responses/{answer['id']}")).status == 200


def response_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def final_response(stream: str) -> dict[str, Any]:
    """The Response in a stream's last event (response.completed)."""
    last = [line for line in stream.splitlines() if line.startswith("data: ")][-1]
    return json.loads(last.removeprefix("data: "))["response"]


# --- file jobs and look-ups ---------------------------------------------------------------------------------

SLOW_IMPORTS, BIG = 8, 256 * 2**20  # eight 256 MiB files to hash: seconds of work on two cores


async def test_look_ups_do_not_wait_behind_file_jobs(api: InProcess, tmp_path: Path) -> None:
    """Eight imports hashing big files (sparse: no disk is filled) take every thread asyncio's default pool
    has; /api/tags, a look-up, answers while they all still run, as fast as the machine lets it."""
    files = []
    for n in range(SLOW_IMPORTS):
        path = write_tiny_gguf(tmp_path / f"big{n}.gguf", seed=n)
        os.truncate(path, BIG)  # zeros after the tensors: still a GGUF, and a lot to hash
        files.append(path)
    finished: list[float] = []

    async def import_(path: Path) -> None:
        response = await api.client.post("/api/import", json={"path": str(path), "model": path.stem, "stream": False})
        assert response.status == 200, await response.text()
        finished.append(time.monotonic())

    imports = [asyncio.create_task(import_(path)) for path in files]
    await asyncio.sleep(0.5)  # all of them hashing by now
    asked = time.monotonic()
    response = await api.client.get("/api/tags")
    answered = time.monotonic()
    assert response.status == 200
    await asyncio.gather(*imports)
    logging.getLogger(__name__).info("GET /api/tags took %.3f s beside %d imports", answered - asked, SLOW_IMPORTS)
    assert not [at for at in finished if at < answered], "an import ended before /api/tags answered: no contention"
    assert answered - asked < 1.0, f"/api/tags took {answered - asked:.2f} s behind the imports"
