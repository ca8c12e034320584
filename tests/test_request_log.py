"""The request log: what a scripted set of requests leaves in it, prompt text only when asked for,
retention, a kill -9, a database that refuses writes, /api/usage and /api/log, `r1 usage` and `r1 log`,
and who asked over the socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.answers import prompt_tokens
from tests.support.daemons import R1, Daemon, start_daemon
from tests.support.inprocess import InProcess
from tests.support.polling import wait_until

from r1.daemon.database import Database
from r1.daemon.metrics import Metrics
from r1.daemon.request_log import RequestLog, RequestRecords

CHAT = {"model": "m", "messages": [{"role": "user", "content": "a secret question"}], "stream": False}


async def logged(api: InProcess, count: int) -> list[dict[str, Any]]:
    """The log's rows (newest first) once at least `count` are written (the writer batches every 0.5 s)."""
    deadline = time.monotonic() + 10
    while True:
        response = await api.client.get("/api/log?limit=1000")
        rows = (await response.json())["requests"]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def scripted_requests(api: InProcess) -> list[tuple[int, int]]:
    """Two chats, a streamed and an unstreamed generate, three OpenAI chats: each answer's own
    (prompt tokens, output tokens)."""
    answers = []
    for _ in range(2):
        response = await api.client.post("/api/chat", json=CHAT)
        answers.append(await response.json())
    response = await api.client.post("/api/generate", json={"model": "m", "prompt": "a secret prompt"})
    answers.append([json.loads(line) for line in (await response.text()).splitlines()][-1])
    response = await api.client.post("/api/generate", json={"model": "m", "prompt": "again", "stream": False})
    answers.append(await response.json())
    counts = [(prompt_tokens(answer), answer["eval_count"]) for answer in answers]
    for _ in range(3):
        response = await api.client.post("/v1/chat/completions", json={
            "model": "m", "messages": [{"role": "user", "content": "a secret question"}]})
        usage = (await response.json())["usage"]
        counts.append((usage["prompt_tokens"], usage["completion_tokens"]))
    return counts


async def test_the_log_counts_what_was_sent(api: InProcess) -> None:
    await api.add_model("m")
    answers = await scripted_requests(api)
    rows = await logged(api, 8)
    generations = [row for row in rows if row["route"] in ("/api/chat", "/api/generate", "/v1/chat/completions")]
    assert {route: sum(row["route"] == route for row in generations)
            for route in ("/api/chat", "/api/generate", "/v1/chat/completions")} == \
        {"/api/chat": 2, "/api/generate": 2, "/v1/chat/completions": 3}
    assert sorted((row["prompt_tokens"], row["output_tokens"]) for row in generations) == \
        sorted(answers)
    assert {row["dialect"] for row in generations if row["route"].startswith("/api/")} == {"ollama"}
    assert {row["dialect"] for row in generations if row["route"].startswith("/v1/")} == {"openai"}
    assert all(row["status"] == 200 and row["model"] == "m:latest" and row["client_kind"] == "tcp"
               and row["client"] == "127.0.0.1" and row["duration_s"] > 0 for row in generations)
    assert all(row["first_token_s"] is not None and row["tokens_per_s"] is not None for row in generations)
    assert all(row["thinking_tokens"] == 0 for row in generations)  # the scripted answers do not think
    assert all(row["thinking_tokens"] is None for row in rows if row not in generations)  # nor generate
    import_row = next(row for row in rows if row["route"] == "/api/import")
    assert import_row["dialect"] == "r1"
    assert [row["id"] for row in rows] == sorted((row["id"] for row in rows), reverse=True), "newest first"
    # nothing of the text: R1_LOG_PROMPTS is off
    assert all(row["prompt"] is None and row["answer"] is None for row in rows)

    response = await api.client.get("/api/usage?by=model&since=1h")
    [model] = [row for row in (await response.json())["usage"] if row["key"] == "m:latest"]
    assert model["requests"] == 7
    assert model["prompt_tokens"] == sum(prompt for prompt, _ in answers)
    assert model["output_tokens"] == sum(output for _, output in answers)
    assert model["tokens_per_s"] > 0 and model["cost"] is None and model["errors"] == 0
    everything = len(await logged(api, 0))
    response = await api.client.get("/api/usage?by=client")
    [client] = (await response.json())["usage"]
    assert client["key"] == "tcp:127.0.0.1" and client["requests"] >= everything
    response = await api.client.get("/api/usage?by=day")
    [day] = (await response.json())["usage"]
    assert day["key"] == time.strftime("%Y-%m-%d")


async def test_prompts_and_answers_are_kept_only_when_asked_for(make_api: Any) -> None:
    api = await make_api(R1_LOG_PROMPTS="1")
    await api.add_model("m")
    await api.client.post("/api/chat", json=CHAT)
    await api.client.post("/api/generate", json={"model": "m", "prompt": "a secret prompt"})
    rows = await logged(api, 3)
    chat = next(row for row in rows if row["route"] == "/api/chat")
    assert "a secret question" in chat["prompt"] and chat["answer"] == "Hello, world!"
    generate = next(row for row in rows if row["route"] == "/api/generate")
    assert generate["prompt"] == "a secret prompt" and generate["answer"] == "Hello, world!"


async def test_errors_are_logged_with_their_status(api: InProcess) -> None:
    response = await api.client.post("/api/chat", json={"model": "nothing-here", "messages": []})
    assert response.status == 404
    [row] = [row for row in await logged(api, 1) if row["route"] == "/api/chat"]
    # The message only with R1_LOG_PROMPTS=1: messages quote what clients sent (test_hostile_remotes.py).
    assert row["status"] == 404 and row["error_text"] == "404 Not Found"
    response = await api.client.get("/api/usage?by=nonsense")
    assert response.status == 400 and "model, day, client" in (await response.json())["error"]
    response = await api.client.get("/api/usage?since=yesterday")
    assert response.status == 400 and "not a duration" in (await response.json())["error"]


async def test_a_database_that_refuses_writes_drops_entries(make_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = Metrics()
    api = await make_api(metrics=metrics)
    await api.add_model("m")

    def refuse(self: RequestRecords, entries: list[dict[str, Any]]) -> list[int]:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(RequestRecords, "insert", refuse)
    for _ in range(3):
        response = await api.client.post("/api/chat", json=CHAT)
        assert response.status == 200 and (await response.json())["message"]["content"] == "Hello, world!"
    wait_for = time.monotonic() + 5
    while metrics.requests_dropped.values.get((), 0) < 4 and time.monotonic() < wait_for:
        await asyncio.sleep(0.1)
    text = await (await api.client.get("/metrics")).text()
    dropped = next(line for line in text.splitlines() if line.startswith("r1_request_log_dropped_total "))
    assert int(dropped.split()[1]) >= 4  # the import and the three chats
    monkeypatch.undo()
    await api.client.get("/api/version")
    await logged(api, 1)
    assert metrics.requests_logged.values[()] >= 1, "it writes again once the database takes writes"


async def test_the_log_can_be_turned_off(make_api: Any) -> None:
    metrics = Metrics()
    api = await make_api(R1_LOG_REQUESTS="0", metrics=metrics)
    await api.client.get("/api/version")
    await asyncio.sleep(0.7)
    assert (await (await api.client.get("/api/log")).json())["requests"] == []
    assert not metrics.requests_logged.values


async def test_follow_streams_each_request_once_written(api: InProcess) -> None:
    await api.client.get("/api/version")
    newest = (await logged(api, 1))[:2]
    response = await api.client.get("/api/log?limit=2&follow=1")
    earlier = [json.loads(await response.content.readline()) for _ in range(2)]
    assert [row["id"] for row in earlier] == [row["id"] for row in reversed(newest)], "the last ones, oldest first"
    await api.client.get("/api/tags")
    later = [json.loads(await asyncio.wait_for(response.content.readline(), 5))]
    while later[-1]["route"] != "/api/tags":  # after the polls of the log that were still queued
        later.append(json.loads(await asyncio.wait_for(response.content.readline(), 5)))
    ids = [row["id"] for row in earlier + later]
    assert ids == sorted(set(ids)), "each once, in order"
    response.close()


@pytest.mark.unit
async def test_retention_prunes_old_entries(tmp_path: Path) -> None:
    database = Database(tmp_path / "r1.db")
    try:
        records = RequestRecords(database)
        now = time.time()
        base = {"client_kind": "other", "dialect": "r1", "method": "GET", "route": "/api/version", "status": 200,
                "duration_s": 0.001}
        records.insert([{**base, "time": now - 3 * 86400}, {**base, "time": now - 60}, {**base, "time": now}])
        log = RequestLog(records, Metrics(), retention=86400)
        assert await log.prune() == 1
        assert [row["time"] for row in records.recent(10)] == [now, now - 60]
        assert await RequestLog(records, Metrics(), retention=-1).prune() == 0, "negative: kept forever"
        assert await RequestLog(records, Metrics(), retention=30, clock=lambda: now + 30).prune() == 1
    finally:
        database.close()


@pytest.mark.unit
def test_the_writer_fills_every_column_the_migration_made() -> None:
    import sqlite_utils

    from r1.daemon.request_log.records import COLUMNS, migrations

    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    assert set(COLUMNS) | {"id"} == set(db["requests"].columns_dict)


def test_a_killed_daemon_keeps_what_was_written_and_names_its_clients(daemon_env: dict[str, str],
                                                                     tmp_path: Path) -> None:
    daemon = start_daemon(daemon_env, tmp_path / "daemon.log")
    try:
        for _ in range(3):
            assert daemon.request("GET", "/api/version")[0] == 200
        assert daemon.request("GET", "/api/tags")[0] == 200

        def written() -> list[dict[str, Any]]:
            return daemon.request("GET", "/api/log?limit=10000")[1]["requests"]

        wait_until(lambda: len(written()) >= 4)
        rows = written()
        mine = [row for row in rows if row["route"] in ("/api/version", "/api/tags")]
        assert sum(row["route"] == "/api/tags" for row in mine) == 1
        assert sum(row["route"] == "/api/version" for row in mine) >= 3  # and start_daemon's waits for the socket
        assert {(row["client_kind"], row["client_pid"], row["client_uid"], row["client"]) for row in mine} == \
            {("unix", os.getpid(), os.getuid(), psutil.Process().name())}

        cli_log = daemon.cli("log", "-n", "50", "--all").stdout.splitlines()
        assert cli_log[0].split()[:2] == ["TIME", "CLIENT"]
        assert sum("GET /api/version" in line for line in cli_log) >= 3 and sum("/api/tags" in line for line in cli_log) == 1
        as_json = json.loads(daemon.cli("log", "-n", "50", "--all", "--json").stdout)
        assert {row["route"] for row in as_json} >= {"/api/version", "/api/tags"}
        usage = daemon.cli("usage", "--by", "client", "--all")
        assert usage.stdout.splitlines()[0].split()[:2] == ["CLIENT", "REQUESTS"]
        assert f"unix:{psutil.Process().name()} uid {os.getuid()}" in usage.stdout
        totals = json.loads(daemon.cli("usage", "--by", "client", "--all", "--json").stdout)["usage"]
        [me] = [row for row in totals if row["key"] == f"unix:{psutil.Process().name()} uid {os.getuid()}"]
        assert me["requests"] >= 4 + 1  # and the reads of the log above

        def by_the_cli() -> list[dict[str, Any]]:
            return [row for row in written() if row["client_kind"] == "unix" and row["client"] == "r1"]

        wait_until(lambda: len(by_the_cli()) == 4, interval=0.3)  # two `r1 log`, two `r1 usage`
        cli_rows = by_the_cli()
        assert all(row["client_pid"] != os.getpid() for row in cli_rows), "the r1 command, by name"

        # -n: the request may be written before the command follows: then it comes with the last ones
        follow = subprocess.Popen([R1, "log", "--follow", "--all", "-n", "10000"], env=daemon.env, stdout=subprocess.PIPE,
                                  text=True)
        watchdog = threading.Timer(20, follow.kill)
        watchdog.start()
        try:
            assert daemon.request("GET", "/api/catalog")[0] == 200
            header = follow.stdout.readline().split()
            line = follow.stdout.readline()
            while line and "/api/catalog" not in line:
                line = follow.stdout.readline()
            assert header[:3] == ["TIME", "CLIENT", "ROUTE"] and "GET /api/catalog" in line and " 200 " in line
        finally:
            watchdog.cancel()
            follow.terminate()
            follow.wait(10)

        long_name = tmp_path / "a-client-with-a-long-name"  # longer than the 15 bytes of Linux's comm
        long_name.symlink_to(sys.executable)
        subprocess.run([str(long_name), "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); "
                        "s.connect(sys.argv[1]); s.sendall(b'GET /api/ps HTTP/1.1\\r\\nHost: x\\r\\n"
                        "Connection: close\\r\\n\\r\\n'); s.recv(100)", str(daemon.socket)], check=True)
        wait_until(lambda: any(row["route"] == "/api/ps" for row in written()))
        [ps] = [row for row in written() if row["route"] == "/api/ps"]
        assert ps["client"] == long_name.name

        ids = {row["id"] for row in written()}
    finally:
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    again = start_daemon(daemon_env, tmp_path / "daemon.log")
    try:
        after = {row["id"] for row in again.request("GET", "/api/log?limit=1000")[1]["requests"]}
        assert ids <= after, "every entry written before the kill is there after a restart"
        follower = socket.socket(socket.AF_UNIX)
        follower.connect(str(again.socket))
        follower.sendall(b"GET /api/log?limit=1&follow=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"200 OK" in follower.recv(1000)
        stopping = time.monotonic()
    finally:
        assert again.stop() == 0
    assert time.monotonic() - stopping < 5, "a follower does not hold the daemon up for R1_SHUTDOWN_GRACE"
    follower.close()


def test_real_generations_through_both_dialects_are_logged_as_answered(gemma_daemon: Daemon) -> None:
    started = time.time()
    answers: dict[str, list[tuple[int, int]]] = {"/api/chat": [], "/api/generate": [], "/v1/chat/completions": []}
    for _ in range(2):
        status, answer = gemma_daemon.request("POST", "/api/chat", {
            "model": "gemma-chat", "messages": [{"role": "user", "content": "Say hi"}], "stream": False})
        assert status == 200, answer
        answers["/api/chat"].append((prompt_tokens(answer), answer["eval_count"]))
    status, answer = gemma_daemon.request("POST", "/api/generate", {
        "model": "gemma", "prompt": "The sky is", "options": {"num_predict": 8}, "stream": False})
    assert status == 200, answer
    answers["/api/generate"].append((prompt_tokens(answer), answer["eval_count"]))
    status, answer = gemma_daemon.request("POST", "/v1/chat/completions", {
        "model": "gemma-chat", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8})
    assert status == 200, answer
    answers["/v1/chat/completions"].append((answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"]))

    def mine() -> list[dict[str, Any]]:
        rows = gemma_daemon.request("GET", "/api/log?limit=1000")[1]["requests"]
        return [row for row in rows if row["time"] >= started and row["client_pid"] == os.getpid()
                and row["route"] in answers]

    wait_until(lambda: len(mine()) == 4)
    for route, counts in answers.items():
        rows = [row for row in mine() if row["route"] == route]
        assert sorted((row["prompt_tokens"], row["output_tokens"]) for row in rows) == sorted(counts)
        assert all(row["status"] == 200 and row["first_token_s"] > 0 and row["duration_s"] >= row["first_token_s"]
                   and row["prompt"] is None for row in rows)
    assert {row["dialect"] for row in mine()} == {"ollama", "openai"}


@pytest.mark.unit
def test_the_settings_turn_the_log_off_and_keep_it_so_in_a_started_daemon() -> None:
    from r1.daemon.config import Settings, parse_duration

    off = Settings.from_env({"R1_LOG_REQUESTS": "0", "R1_LOG_RETENTION": "7d"})
    assert off.log_requests is False and off.log_retention == 7 * 86400
    assert Settings.from_env(off.as_env()).log_requests is False, "autostart passes the 0 on"
    assert Settings.from_env({}).log_requests is True and Settings.from_env({}).log_prompts is False
    assert parse_duration("30d", "R1_LOG_RETENTION") == 30 * 86400 == Settings.from_env({}).log_retention


def test_a_reasoning_models_thinking_tokens_are_counted_apart(gemma_daemon: Daemon) -> None:
    started = time.time()
    status, answer = gemma_daemon.request("POST", "/api/chat", {
        "model": "thinker", "messages": [{"role": "user", "content": "2+2?"}], "stream": False,
        "options": {"num_predict": 12, "temperature": 0}})
    assert status == 200 and answer["message"]["thinking"], answer  # the thinker's answer is all thinking

    def row() -> dict[str, Any] | None:
        rows = gemma_daemon.request("GET", "/api/log?limit=200")[1]["requests"]
        return next((r for r in rows if r["time"] >= started and r["model"] == "thinker:latest"), None)

    wait_until(lambda: row() is not None)
    logged = row()
    assert logged is not None and 0 < logged["thinking_tokens"] <= logged["output_tokens"] == 12


def test_reads_of_the_daemons_state_are_left_out_unless_asked_for_and_rows_come_in_start_order(
        gemma_daemon: Daemon) -> None:
    def totals(reads: int) -> dict[str, Any]:
        rows = gemma_daemon.request("GET", f"/api/usage?by=model&since=1h&reads={reads}")[1]["usage"]
        return next((row for row in rows if row["key"] == ""), {"requests": 0, "errors": 0})

    started = time.time()
    before = {reads: totals(reads) for reads in (0, 1)}
    gemma_daemon.cli("list")
    gemma_daemon.cli("ps")
    assert gemma_daemon.request("POST", "/api/show", {"model": "no-such-model"})[0] == 404
    # A long generation that starts first and ends last, and a short one in between.
    long_one = threading.Thread(target=gemma_daemon.request, args=("POST", "/api/generate", {
        "model": "gemma", "prompt": "Count to fifty:", "options": {"num_predict": 48}, "stream": False}))
    long_one.start()
    wait_until(lambda: any(m["state"] == "busy" for m in gemma_daemon.request("GET", "/api/ps")[1]["models"]))
    status, _ = gemma_daemon.request("POST", "/api/generate", {
        "model": "gemma", "prompt": "Hi", "options": {"num_predict": 1}, "stream": False})
    assert status == 200
    long_one.join()

    def mine(reads: int) -> list[dict[str, Any]]:
        rows = gemma_daemon.request("GET", f"/api/log?limit=1000&reads={reads}")[1]["requests"]
        return [row for row in rows if row["time"] >= started]

    wait_until(lambda: len([r for r in mine(0) if r["route"] == "/api/generate"]) == 2)
    wait_until(lambda: totals(1)["errors"] == before[1]["errors"] + 1)
    quiet = mine(0)
    assert {row["route"] for row in quiet} == {"/api/generate"}, quiet
    everything = {row["route"] for row in mine(1)}
    assert {"/api/tags", "/api/ps", "/api/show", "/api/generate"} <= everything
    short, long = quiet  # newest first by when they started, though the long one was written last
    assert short["output_tokens"] == 1 and long["output_tokens"] == 48 and long["id"] > short["id"]
    assert totals(0)["errors"] == before[0]["errors"], "a read's 404 is no error of a model request"

    shown = gemma_daemon.cli("log", "-n", "3").stdout
    assert "/api/tags" not in shown and "GET /api/log" not in shown
    assert "GET /api/log" in gemma_daemon.cli("log", "-n", "3", "--all").stdout


def test_ctrl_c_during_a_load_is_logged_as_a_cancel_not_an_error(gemma_daemon: Daemon) -> None:
    def loaded() -> list[dict[str, Any]]:  # gemma, or a model made from it (the same runner)
        return [m for m in gemma_daemon.request("GET", "/api/ps")[1]["models"] if m["name"].startswith("gemma")]

    gemma_daemon.cli("stop", "gemma")
    wait_until(lambda: not loaded())
    log_start = len(gemma_daemon.log())
    started = time.time()
    client = subprocess.Popen([R1, "run", "gemma", "Once upon a time"], env=gemma_daemon.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: any(m["state"] == "loading" for m in loaded()), interval=0.02)
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=30)
    assert client.returncode == 130 and "Traceback" not in err and "Error" not in err, err

    def row() -> dict[str, Any] | None:
        rows = gemma_daemon.request("GET", "/api/log?limit=50&reads=0")[1]["requests"]
        return next((r for r in rows if r["time"] >= started and r["route"] == "/api/generate"), None)

    wait_until(lambda: row() is not None)
    assert row()["status"] == 499 and row()["model"] == "gemma:latest"  # type: ignore[index]
    daemon_log = gemma_daemon.log()[log_start:]
    assert " 500 " not in daemon_log and "ERROR" not in daemon_log and "Traceback" not in daemon_log, daemon_log
