"""A real `r1 serve` on a temp socket and store, driven by the real `r1` CLI and raw HTTP; the API's answers and errors in-process."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import R1, Daemon, start_daemon
from tests.support.inprocess import InProcess
from r1.daemon import __version__
from r1.daemon.api.ollama import OLLAMA_API_LEVEL
from tests.support.tinymodels import write_split_gguf, write_tiny_gguf, write_tiny_mlx_folder

GEMMA_SIZE = 253_113_024
GEMMA_DIGEST = "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def blob_names(daemon: Daemon) -> list[str]:
    return sorted(p.name for p in (daemon.home / "blobs").iterdir())


def test_import_list_show_cp_rm_end_to_end(daemon: Daemon, gemma_path: Path) -> None:
    out = daemon.cli("import", str(gemma_path), "--name", "gemma3:270m").stdout
    assert out.startswith("imported gemma3:270m (253 MB, ")

    listing = daemon.cli("list").stdout.splitlines()
    assert listing[0].split() == ["NAME", "ID", "SIZE", "FORMAT", "QUANT", "MODIFIED"]
    row = listing[1].split()
    assert row[0] == "gemma3:270m" and row[2:6] == ["253", "MB", "gguf", "Q4_K_M"]
    model_id = row[1]

    models = json.loads(daemon.cli("list", "--json").stdout)
    assert [m["name"] for m in models] == ["gemma3:270m"]
    assert models[0]["size"] == GEMMA_SIZE and models[0]["digest"].startswith(model_id)
    assert models[0]["details"]["family"] == "gemma3" and models[0]["details"]["quantization_level"] == "Q4_K_M"

    shown = daemon.cli("show", "gemma3:270m").stdout
    words = " ".join(shown.split())  # the columns' widths aside
    assert "architecture gemma3" in words and "quantization Q4_K_M" in words
    assert "context length 32768" in words and "chat template none" in words
    info = json.loads(daemon.cli("show", "GEMMA3:270M", "--json").stdout)
    assert info["model_info"]["general.architecture"] == "gemma3"
    assert info["model_info"]["gemma3.context_length"] == 32768
    # A hard link to the user's file: r1 records where it came from, to refuse the file if it changes.
    assert info["files"] == [{"path": gemma_path.name, "digest": GEMMA_DIGEST, "size": GEMMA_SIZE, "present": True,
                              "source": {"kind": "linked", "path": str(gemma_path)}}]
    snapshot_file = Path(info["path"]) / gemma_path.name
    assert snapshot_file.stat().st_size == GEMMA_SIZE

    # The same file under a second name is stored once.
    daemon.cli("import", str(gemma_path), "--name", "second", "--copy")
    assert blob_names(daemon) == [GEMMA_DIGEST.replace(":", "-")]
    assert "copied 'second' to 'hf.co/me/gemma:q4'" in daemon.cli("cp", "second", "hf.co/me/gemma:q4").stdout
    ids = {m["name"]: m["digest"] for m in json.loads(daemon.cli("list", "--json").stdout)}
    assert set(ids) == {"gemma3:270m", "second:latest", "hf.co/me/gemma:q4"} and len(set(ids.values())) == 1

    result = daemon.cli("rm", "gemma3:270m", "second", "nosuch", check=False)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["deleted 'gemma3:270m'", "deleted 'second'"]
    assert "model 'nosuch:latest' not found" in result.stderr
    assert blob_names(daemon) == [GEMMA_DIGEST.replace(":", "-")], "the copy still needs the blob"
    daemon.cli("rm", "hf.co/me/gemma:q4")
    assert blob_names(daemon) == [] and list((daemon.home / "snapshots").iterdir()) == []
    assert daemon.cli("list").stdout.strip() == "NAME   ID   SIZE   FORMAT   QUANT   MODIFIED"


def test_import_split_gguf_and_mlx_folder(daemon: Daemon, tmp_path: Path) -> None:
    shards = write_split_gguf(tmp_path / "split", "tiny-split", shards=3)
    out = daemon.cli("import", str(shards[1]), "--name", "split").stdout
    assert out.startswith("imported split:latest")
    info = json.loads(daemon.cli("show", "split", "--json").stdout)
    assert [f["path"] for f in info["files"]] == [s.name for s in shards]

    folder = write_tiny_mlx_folder(tmp_path / "mlx-model", quantized_bits=4)
    daemon.cli("import", str(folder), "--name", "tiny-mlx:4bit")
    info = json.loads(daemon.cli("show", "tiny-mlx:4bit", "--json").stdout)
    assert info["details"]["format"] == "mlx" and info["details"]["quantization_level"] == "4bit"
    paths = [f["path"] for f in info["files"]]
    assert "config.json" in paths and "model.safetensors" in paths and "README.md" not in paths
    snapshot = Path(info["path"])
    assert json.loads((snapshot / "config.json").read_text())["model_type"] == "llama"


def test_bad_imports_are_clear_and_change_nothing(daemon: Daemon, tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_text("this is not a model")
    result = daemon.cli("import", str(fake), "--name", "fake", check=False)
    assert result.returncode == 1 and "fake.gguf" in result.stderr and "GGUF" in result.stderr
    for name in ("../../etc/passwd", "hf.co/a/../../b"):
        result = daemon.cli("import", str(write_tiny_gguf(tmp_path / "t.gguf")), "--name", name, check=False)
        assert result.returncode == 1 and "invalid model name" in result.stderr
    status, body = daemon.request("POST", "/api/import", {"path": "relative.gguf", "model": "x"})
    assert status == 400 and "absolute" in body["error"]
    status, body = daemon.request("POST", "/api/import", {"path": str(tmp_path / "nope.gguf"), "model": "x"})
    assert status == 400 and "no such file" in body["error"]
    assert json.loads(daemon.cli("list", "--json").stdout) == []
    assert blob_names(daemon) == [] and list((daemon.home / "partial").iterdir()) == []


async def test_api_speaks_ollama_and_errors_are_json(api: InProcess, caplog: pytest.LogCaptureFixture) -> None:
    """In-process: the routes' answers and every error as JSON with a fitting status."""
    client = api.client

    async def call(method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        response = await client.request(method, path, json=body if raw is None else None, data=raw)
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()

    assert await call("GET", "/") == (200, "Ollama is running")  # the words health checks compare
    status, body = await call("GET", "/api/version")
    assert status == 200 and body == {"version": OLLAMA_API_LEVEL, "r1_version": __version__}
    assert await call("GET", "/api/tags") == (200, {"models": []})

    tiny = write_tiny_gguf(api.tmp / "tiny.gguf")
    status, body = await call("POST", "/api/import", {"path": str(tiny), "model": "tiny", "stream": False})
    assert status == 200 and body["status"] == "success" and body["model"] == "tiny:latest"
    status, body = await call("POST", "/api/show", {"name": "tiny"})  # Ollama's older field name
    assert status == 200 and body["template"] and body["capabilities"] == ["completion"]
    assert body["details"]["quantization_level"] == "F32"

    cases = [
        (("POST", "/api/show", {"model": "nosuch"}), 404, "model 'nosuch:latest' not found"),
        (("POST", "/api/show", {"model": "../../etc/passwd"}), 400, "invalid model name '../../etc/passwd'"),
        (("POST", "/api/show", {"model": "hf.co/a/../../b"}), 400, "invalid model name 'hf.co/a/../../b'"),
        (("POST", "/api/show", {}), 400, "field 'model' is required"),
        (("POST", "/api/show", {"model": 7}), 400, "field 'model' must be a string"),
        (("POST", "/api/show", [1, 2]), 400, "must be a JSON object"),
        (("DELETE", "/api/delete", {"model": "nosuch"}), 404, "not found"),
        (("POST", "/api/copy", {"source": "tiny"}), 400, "field 'destination' is required"),
        (("POST", "/api/copy", {"source": "nosuch", "destination": "x"}), 404, "not found"),
        (("POST", "/api/copy", {"source": "tiny", "destination": "../x"}), 400, "invalid model name"),
        (("GET", "/api/nothing", None), 404, "no such endpoint: GET /api/nothing"),
        (("GET", "/api/show", None), 405, "method GET is not allowed"),
    ]
    for (method, path, body), want_status, want_text in cases:
        status, answer = await call(method, path, body)
        assert status == want_status and want_text in answer["error"], (method, path, body, status, answer)
    status, answer = await call("POST", "/api/show", raw=b"{not json")
    assert status == 400 and "invalid JSON" in answer["error"]

    assert (await call("POST", "/api/copy", {"source": "tiny", "destination": "tiny2"}))[0] == 200
    assert (await call("DELETE", "/api/delete", {"model": "tiny"}))[0] == 200
    assert [m["name"] for m in (await call("GET", "/api/tags"))[1]["models"]] == ["tiny2:latest"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


def test_socket_is_private(gemma_daemon: Daemon) -> None:
    mode = gemma_daemon.socket.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_daemon_cleanly(daemon_env: dict[str, str], tmp_path: Path, signum: int) -> None:
    running = start_daemon(daemon_env, tmp_path / "d.log")
    assert running.stop(signum) == 0
    assert not running.socket.exists()
    assert "stopped" in running.log() and "Traceback" not in running.log()


def test_stale_socket_is_replaced_and_a_live_daemon_is_not(daemon_env: dict[str, str], tmp_path: Path) -> None:
    socket_path = Path(daemon_env["R1_SOCKET"])
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path))
    stale.close()  # the file stays, nobody listens: what a killed daemon leaves
    first = start_daemon(daemon_env, tmp_path / "first.log")
    try:
        second = subprocess.run([R1, "serve"], env=daemon_env, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert "another r1 daemon" in second.stderr and f"pid {first.process.pid}" in second.stderr
        assert first.request("GET", "/api/version")[0] == 200, "the first daemon is untouched"
    finally:
        assert first.stop() == 0


def test_killed_daemon_leaves_a_socket_the_next_one_replaces(daemon_env: dict[str, str], tmp_path: Path) -> None:
    first = start_daemon(daemon_env, tmp_path / "first.log")
    first.stop(signal.SIGKILL)
    assert first.socket.exists()
    second = start_daemon(daemon_env, tmp_path / "second.log")
    assert second.request("GET", "/api/tags")[0] == 200
    assert second.stop() == 0


def test_start_up_repairs_the_store_and_says_so(daemon_env: dict[str, str], tmp_path: Path) -> None:
    blobs = Path(daemon_env["R1_HOME"]) / "blobs"
    blobs.mkdir(parents=True)
    orphan = blobs / ("sha256-" + "ab" * 32)
    orphan.write_bytes(b"left by a crash")
    running = start_daemon(daemon_env, tmp_path / "d.log")
    try:
        assert not orphan.exists()
        assert f"removed orphan blob sha256:{'ab' * 32}" in running.log()
    finally:
        assert running.stop() == 0


def test_cli_starts_the_daemon_when_allowed(daemon_env: dict[str, str]) -> None:
    refused = subprocess.run([R1, "list"], env=daemon_env, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert "no r1 daemon is listening" in refused.stderr and "r1 serve" in refused.stderr

    env = {k: v for k, v in daemon_env.items() if k != "R1_NO_AUTOSTART"}
    started = subprocess.run([R1, "list"], env=env, capture_output=True, text=True, timeout=60)
    try:
        assert started.returncode == 0, started.stderr
        assert "Started the r1 daemon in the background" in started.stderr
        assert started.stdout.startswith("NAME")
        again = subprocess.run([R1, "list"], env=env, capture_output=True, text=True, timeout=30)
        assert again.returncode == 0 and "Started" not in again.stderr
    finally:
        pid = int((Path(env["R1_HOME"]) / "daemon.lock").read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while Path(env["R1_SOCKET"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(env["R1_SOCKET"]).exists(), "the autostarted daemon did not stop on SIGTERM"


def test_version_reports_client_and_daemon(gemma_daemon: Daemon) -> None:
    result = gemma_daemon.cli("version")
    assert result.stdout.startswith("r1 version ") and result.stderr == ""
    assert gemma_daemon.cli("--version").stdout.startswith("r1 version ")


def test_version_without_daemon(daemon_env: dict[str, str]) -> None:
    result = subprocess.run([R1, "version"], env=daemon_env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "no daemon is running" in result.stderr
