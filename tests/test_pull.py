"""Pulls from a fake Hub on loopback, resolved by the real huggingface_hub client.

POST /api/pull and what it stores are tested in-process (r1's app on aiohttp's test server);
two tests need processes: a daemon killed mid-pull that resumes after a restart, and `r1 pull`
(with `r1 search`) rendering what the daemon says."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemons import R1, Daemon, start_daemon
from tests.support.fakehub import FakeHub
from tests.support.inprocess import InProcess
from tests.support.polling import wait_until
from tests.support.unixhttp import Stream
from r1.cli.render import human_size
from r1.daemon.intake.pull.transfer import chunk_size
from tests.support.terminal import Terminal
from tests.support.tinymodels import write_split_gguf, write_tiny_gguf, write_tiny_mlx_folder

GEMMA_REPO = "test/gemma-3-270m-GGUF"
Q4, Q8 = "gemma-3-270m-Q4_K_M.gguf", "gemma-3-270m-Q8_0.gguf"
GEMMA_SIZE = 253_113_024
GEMMA_DIGEST = "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
TINY_REPO = "test/tiny-GGUF"
TINY_Q4, TINY_Q8 = "tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"
TINY_NAME = f"hf.co/{TINY_REPO}:latest"
TOKEN = "hf_test_token"


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two different tiny GGUFs (about 0.4 MB, one byte range each) for TINY_REPO."""
    root = tmp_path_factory.mktemp("tiny-repo")
    return {TINY_Q4: write_tiny_gguf(root / TINY_Q4, seed=3), TINY_Q8: write_tiny_gguf(root / TINY_Q8, seed=4)}


@pytest.fixture
def hub(gemma_path: Path, tiny_files: dict[str, Path]) -> Iterator[FakeHub]:
    with FakeHub(token=TOKEN) as fake:
        # The same real GGUF under two quant names: enough to tell tags apart and to prove dedup.
        fake.add_repo(GEMMA_REPO, {Q4: gemma_path, Q8: gemma_path, "README.md": b"# Gemma\n"})
        fake.add_repo(TINY_REPO, {**tiny_files, "README.md": b"# Tiny\n"})
        yield fake


MakeApi = Callable[..., Awaitable[InProcess]]


@pytest.fixture
async def served(make_api: MakeApi, hub: FakeHub, hf_client: None) -> InProcess:
    """r1's app in-process, pulling from the fake Hub (its settings built from the Hub's environment)."""
    return await make_api(**hub.env())


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    """wait_until for the app's own loop: polls without blocking it."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {check}")
        await asyncio.sleep(0.02)


def store_files(home: Path, folder: str) -> list[str]:
    return sorted(p.name for p in (home / folder).iterdir())


# --- in-process --------------------------------------------------------------------------------


async def test_default_quant_then_explicit_quant_of_the_same_bytes_downloads_nothing(
        served: InProcess, hub: FakeHub) -> None:
    """The real Gemma: checked against its sha256, stored once under two tags."""
    status, [done] = await served.pull(f"hf.co/{GEMMA_REPO}", stream=False)
    assert status == 200, done
    assert {k: done[k] for k in ("status", "model", "tag", "size", "repo", "downloaded", "digest")} == {
        "status": "success", "model": f"hf.co/{GEMMA_REPO}:latest", "tag": "Q4_K_M", "size": GEMMA_SIZE,
        "repo": GEMMA_REPO, "downloaded": GEMMA_SIZE, "digest": done["digest"]}
    assert hub.served_bytes(GEMMA_REPO, Q4) == GEMMA_SIZE
    info = await served.show(f"hf.co/{GEMMA_REPO}")
    assert info["files"] == [{"path": Q4, "digest": GEMMA_DIGEST, "size": GEMMA_SIZE, "present": True}]
    assert info["details"]["quantization_level"] == "Q4_K_M" and info["model_info"]["general.architecture"] == "gemma3"
    assert info["digest"] == done["digest"]

    hub.reset_counters()  # the other tag, streamed, asked for with Ollama's older field name
    response = await served.client.post("/api/pull", json={"name": f"{GEMMA_REPO}:q8_0"})
    assert response.status == 200 and response.content_type == "application/x-ndjson"
    events = [json.loads(line) for line in (await response.text()).splitlines()]
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    progress = [e for e in events if "total" in e]
    assert progress and all(e["digest"] == GEMMA_DIGEST and e["total"] == GEMMA_SIZE and e["file"] == Q8
                            for e in progress)
    assert progress[-1]["completed"] == GEMMA_SIZE and progress[-1]["status"] == "pulling a5fd3b62230a"
    assert events[-1]["tag"] == "Q8_0" and events[-1]["size"] == GEMMA_SIZE and events[-1]["downloaded"] == 0
    assert hub.served_bytes(GEMMA_REPO, Q8) == 0 and hub.served_bytes(GEMMA_REPO, Q4) == 0
    assert await served.names() == {f"hf.co/{GEMMA_REPO}:latest", f"hf.co/{GEMMA_REPO}:q8_0"}
    assert store_files(served.home, "blobs") == [GEMMA_DIGEST.replace(":", "-")]
    assert store_files(served.home, "partial") == []

    hub.reset_counters()  # pulling again checks the Hub and moves no bytes
    status, [again] = await served.pull(f"hf.co/{GEMMA_REPO}", stream=False)
    assert status == 200 and again["status"] == "success" and again["downloaded"] == 0 and again["up_to_date"] is True
    assert hub.served_bytes(GEMMA_REPO, Q4) == 0
    assert any(path.startswith(f"/api/models/{GEMMA_REPO}") for _, path, _ in hub.requests)


async def test_progress_while_downloading(served: InProcess, hub: FakeHub, tiny_files: dict[str, Path]) -> None:
    size, digest = tiny_files[TINY_Q4].stat().st_size, digest_of(tiny_files[TINY_Q4])
    hub.throttle(400_000)  # about a second: progress events come every quarter of one
    status, events = await served.pull(TINY_REPO)
    assert status == 200
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    progress = [e for e in events if "total" in e]
    assert all(e == {"status": f"pulling {digest[7:19]}", "digest": digest, "total": size,
                     "completed": e["completed"], "file": TINY_Q4} for e in progress)
    completed = [e["completed"] for e in progress]
    assert completed == sorted(completed) and completed[-1] == size
    assert len(set(completed)) >= 3, completed  # some in between: it reports as it goes, not only at the end
    assert events[-1]["model"] == TINY_NAME and events[-1]["downloaded"] == size
    info = await served.show(TINY_REPO)
    assert info["files"] == [{"path": TINY_Q4, "digest": digest, "size": size, "present": True}]
    assert (Path(info["path"]) / TINY_Q4).read_bytes() == tiny_files[TINY_Q4].read_bytes()


async def test_split_gguf_and_mlx_repos(served: InProcess, hub: FakeHub, tmp_path: Path) -> None:
    shards = write_split_gguf(tmp_path / "split", "tiny-Q8_0", shards=3)
    hub.add_repo("test/split-GGUF", {f"Q8_0/{p.name}": p for p in shards} | {"README.md": b"x"})
    status, events = await served.pull("test/split-GGUF")  # no Q4_K_M: the best that fits, and it says so
    assert status == 200 and events[-1]["status"] == "success" and events[-1]["tag"] == "Q8_0"
    [note] = [e["status"] for e in events if e["status"].startswith("no Q4_K_M")]
    assert note.startswith("no Q4_K_M in test/split-GGUF: picked Q8_0, the best quantization that fits")
    info = await served.show("test/split-GGUF")
    assert [f["path"] for f in info["files"]] == [f"Q8_0/{p.name}" for p in shards]
    assert all((Path(info["path"]) / "Q8_0" / p.name).read_bytes() == p.read_bytes() for p in shards)

    folder = write_tiny_mlx_folder(tmp_path / "mlx", quantized_bits=4)
    hub.add_repo("mlx-test/tiny-4bit", {p.name: p for p in folder.iterdir()} | {"images/logo.png": b"\x89PNG"})
    status, [done] = await served.pull("mlx-test/tiny-4bit", stream=False)
    assert status == 200 and done["status"] == "success" and done["tag"] == "mlx"
    info = await served.show("mlx-test/tiny-4bit")
    assert info["details"]["format"] == "mlx" and info["details"]["quantization_level"] == "4bit"
    paths = sorted(f["path"] for f in info["files"])
    assert "config.json" in paths and "model.safetensors" in paths
    assert not {"README.md", ".gitattributes", "images/logo.png"} & set(paths)
    assert (Path(info["path"]) / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    status, [error] = await served.pull("mlx-test/tiny-4bit:Q4_K_M")
    assert status == 404 and "is an MLX model with a single variant" in error["error"]


async def test_a_dropped_connection_resumes_with_a_range(served: InProcess, hub: FakeHub,
                                                         tiny_files: dict[str, Path]) -> None:
    size = tiny_files[TINY_Q4].stat().st_size
    hub.drop_after(TINY_REPO, TINY_Q4, 100_000, times=2)
    status, [done] = await served.pull(TINY_REPO, stream=False)
    assert status == 200 and done["status"] == "success"
    # The one range, then twice from where the connection dropped: nothing is fetched twice.
    ranges = [r for method, path, r in hub.requests if method == "GET" and path.endswith(TINY_Q4)]
    assert ranges == [f"bytes=0-{size - 1}", f"bytes=100000-{size - 1}", f"bytes=200000-{size - 1}"]
    assert hub.served_bytes(TINY_REPO, TINY_Q4) == size
    assert (await served.show(TINY_REPO))["files"][0]["digest"] == digest_of(tiny_files[TINY_Q4])


async def test_a_corrupt_download_is_discarded_and_retried_once(
        served: InProcess, hub: FakeHub, tiny_files: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    size = tiny_files[TINY_Q4].stat().st_size
    hub.corrupt(TINY_REPO, TINY_Q4, times=1)
    with caplog.at_level(logging.WARNING, logger="r1.daemon.intake.pull"):
        status, [done] = await served.pull(TINY_REPO, stream=False)
    assert status == 200 and done["status"] == "success"
    assert f"{TINY_Q4} failed its sha256 check" in caplog.text and "downloading it again" in caplog.text
    assert hub.served_bytes(TINY_REPO, TINY_Q4) == 2 * size
    assert await served.names() == {TINY_NAME}
    assert (await served.show(TINY_REPO))["files"][0]["digest"] == digest_of(tiny_files[TINY_Q4])


async def test_a_download_corrupt_twice_is_a_clear_error(served: InProcess, hub: FakeHub) -> None:
    hub.corrupt(TINY_REPO, TINY_Q4, times=1000)  # every range of both attempts
    status, [error] = await served.pull(TINY_REPO, stream=False)
    assert status == 502 and f"{TINY_Q4} from {TINY_REPO} failed its sha256 check twice" in error["error"]
    status, events = await served.pull(TINY_REPO)  # streamed: the error is the last line
    assert status == 200 and "failed its sha256 check twice" in events[-1]["error"]
    assert "success" not in [e.get("status") for e in events]
    assert await served.names() == set()
    assert store_files(served.home, "blobs") == [] and store_files(served.home, "partial") == []


async def test_unknown_repo_tag_and_gated_repo_errors(served: InProcess, hub: FakeHub) -> None:
    cases = [
        ({"model": "test/nosuch"}, 404, "no model repo 'test/nosuch' on"),
        ({"model": f"{GEMMA_REPO}:Q9_9"}, 404, f"{GEMMA_REPO} has no GGUF file for tag 'Q9_9'; its tags are: Q8_0, Q4_K_M"),
        ({"model": "nosuch:7b"}, 404, "not in r1's catalog (`r1 search` lists it)"),
        ({"model": "../../etc/passwd"}, 400, "invalid model name"),
        ({}, 400, "field 'model' is required"),
        ({"model": TINY_REPO, "stream": "yes"}, 400, "field 'stream' must be true or false"),
    ]
    for body, want_status, want_text in cases:
        response = await served.client.post("/api/pull", json=body)
        answer = await response.json()
        assert response.status == want_status and want_text in answer["error"], (body, response.status, answer)
    status, [answer] = await served.pull("test/nosuch")
    assert status == 404 and answer["error"].startswith("model 'hf.co/test/nosuch:latest' not found: not in the store; "
                                                        f"no model repo 'test/nosuch' on {hub.url}")

    hub.add_repo("test/gated-GGUF", {"m-Q4_K_M.gguf": b"GGUF" + b"\0" * 100}, gated=True)
    status, [answer] = await served.pull("test/gated-GGUF")
    assert status == 403 and "test/gated-GGUF is gated" in answer["error"] and "HF_TOKEN" in answer["error"]
    assert await served.names() == set()
    assert not any("/resolve/" in path for _, path, _ in hub.requests), "no byte was asked for"


async def test_gated_repo_with_a_token(make_api: MakeApi, hub: FakeHub, hf_client: None,
                                       tiny_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("test/gated-GGUF", {TINY_Q4: tiny_files[TINY_Q4]}, gated=True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # what the daemon's environment would hold
    api = await make_api(**hub.env())
    status, [done] = await api.pull("test/gated-GGUF", stream=False)
    assert status == 200 and done["status"] == "success" and done["model"] == "hf.co/test/gated-GGUF:latest"
    assert hub.served_bytes("test/gated-GGUF", TINY_Q4) == tiny_files[TINY_Q4].stat().st_size


async def test_two_clients_pulling_one_model_share_one_transfer(served: InProcess, hub: FakeHub,
                                                                tiny_files: dict[str, Path]) -> None:
    size = tiny_files[TINY_Q4].stat().st_size
    hub.throttle(1_000_000)  # the first pull is still under way when the second asks
    (status1, first), (status2, second) = await asyncio.gather(served.pull(TINY_REPO), served.pull(TINY_REPO))
    assert status1 == status2 == 200
    # One pull, followed by both: the same events, each saying it downloaded the file.
    assert first == second and first[-1]["status"] == "success" and first[-1]["downloaded"] == size
    assert hub.served_bytes(TINY_REPO, TINY_Q4) == size


async def test_the_pull_goes_on_when_the_client_leaves(served: InProcess, hub: FakeHub,
                                                       tiny_files: dict[str, Path]) -> None:
    size = tiny_files[TINY_Q4].stat().st_size
    hub.throttle(200_000)  # about two seconds
    response = await served.client.post("/api/pull", json={"model": TINY_REPO})
    assert response.status == 200
    assert json.loads(await response.content.readline())["status"] == "pulling manifest"

    async def started() -> bool:
        return hub.served_bytes(TINY_REPO, TINY_Q4) > 0

    await eventually(started)
    response.close()  # the client goes away mid-transfer
    left_at = hub.served_bytes(TINY_REPO, TINY_Q4)
    assert 0 < left_at < size
    hub.throttle(None)

    async def stored() -> bool:
        return TINY_NAME in await served.names()

    await eventually(stored)
    assert hub.served_bytes(TINY_REPO, TINY_Q4) == size, "the transfer went on; it did not start again"


async def test_offline_mode(make_api: MakeApi, hub: FakeHub, hf_client: None, tmp_path: Path) -> None:
    api = await make_api(**hub.env(), HF_HUB_OFFLINE="1")
    status, [answer] = await api.pull(TINY_REPO)
    assert status == 503 and "HF_HUB_OFFLINE is set" in answer["error"]
    # A model already in the store is kept as it is, without asking the Hub.
    await api.add_model(TINY_NAME)
    status, events = await api.pull(TINY_REPO)
    assert status == 200 and events[-1]["status"] == "success" and events[-1]["downloaded"] == 0
    assert "HF_HUB_OFFLINE is set" in events[-1]["note"]
    assert hub.requests == []


async def test_catalog_lists_short_names(served: InProcess) -> None:
    response = await served.client.get("/api/catalog")
    assert response.status == 200
    models = {m["name"]: m for m in (await response.json())["models"]}
    assert {"deepseek-r1:1.5b", "deepseek-r1:70b", "deepseek-r1:7b-mlx-4bit"} <= set(models)
    assert all(m["repo"].count("/") == 1 and m["installed"] is False for m in models.values())


def test_not_enough_space_keeps_nothing_half_done(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The transfer checks free space before it writes, and says what to do."""
    import shutil

    import aiohttp

    from r1.daemon.errors import InsufficientStorage
    from r1.daemon.intake.pull.transfer import RangedDownload
    from r1.daemon.store.blobs import BlobStore

    blobs = BlobStore(tmp_path / "home")
    blobs.create_dirs()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))

    async def download() -> None:
        async with aiohttp.ClientSession() as session:
            url = f"{hub.url}/{GEMMA_REPO}/resolve/main/{Q4}"
            await RangedDownload(session, url, {}, GEMMA_SIZE, GEMMA_DIGEST, blobs, 4).run()

    with pytest.raises(InsufficientStorage) as info:
        asyncio.run(download())
    assert f"needs {GEMMA_SIZE:,} bytes" in str(info.value) and "r1 rm" in str(info.value)
    assert hub.served_bytes(GEMMA_REPO, Q4) == 0
    assert list(blobs.dir.iterdir()) == []


# --- processes ---------------------------------------------------------------------------------


@pytest.fixture
def hub_env(daemon_env: dict[str, str], hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    env = {**daemon_env, **hub.env(), "HF_HOME": str(tmp_path / "hf")}  # no token from this machine
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        env.pop(variable, None)
    return env


@pytest.fixture
def daemon(hub_env: dict[str, str], tmp_path: Path) -> Iterator[Daemon]:
    running = start_daemon(hub_env, tmp_path / "daemon.log")
    yield running
    assert running.stop() == 0, running.log()


def test_r1_pull_and_search_render_what_the_daemon_says(daemon: Daemon, hub: FakeHub, tmp_path: Path,
                                                        tiny_files: dict[str, Path]) -> None:
    shards = write_split_gguf(tmp_path / "split", "tiny-Q8_0", shards=3)
    commit = hub.add_repo("test/split-GGUF", {f"Q8_0/{p.name}": p for p in shards} | {"README.md": b"x"})
    size = human_size(sum(p.stat().st_size for p in shards))
    result = daemon.cli("pull", "test/split-GGUF")
    assert "no Q4_K_M in test/split-GGUF: picked Q8_0, the best quantization that fits" in result.stderr
    assert result.stdout.startswith(f"pulled hf.co/test/split-GGUF:latest (Q8_0, {size}) from test/split-GGUF: "
                                    f"{size} downloaded in "), result.stdout
    again = daemon.cli("pull", "hf.co/test/split-GGUF")  # the Hub has nothing newer: nothing moves
    assert again.stdout == "hf.co/test/split-GGUF:latest is up to date\n"
    assert f"test/split-GGUF is still at commit {commit[:12]}" in again.stderr

    failed = daemon.cli("pull", f"{TINY_REPO}:Q9_9", check=False)
    assert failed.returncode == 1 and failed.stdout == ""
    assert f"{TINY_REPO} has no GGUF file for tag 'Q9_9'; its tags are: Q8_0, Q4_K_M" in failed.stderr

    out = daemon.cli("search", "deepseek", "mlx").stdout.splitlines()
    assert out[0].split()[:3] == ["NAME", "REPO", "QUANT"]
    assert any(line.startswith("deepseek-r1:7b-mlx-4bit") for line in out)
    assert len(out) > 1 and all("mlx" in line.lower() for line in out[1:])
    available = json.loads(daemon.cli("list", "--available", "--json").stdout)
    assert {"deepseek-r1:1.5b", "deepseek-r1:70b"} <= {m["name"] for m in available}


def test_a_daemon_killed_mid_pull_resumes_after_restart(hub: FakeHub, hub_env: dict[str, str], tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "medium-Q4_K_M.gguf", width=512, seed=7)  # about 20 MB: 16 ranges
    size, digest = model.stat().st_size, digest_of(model)
    hub.add_repo("test/medium-GGUF", {model.name: model})
    daemon = start_daemon(hub_env, tmp_path / "killed.log")
    hub.throttle(500_000)  # per connection: slow enough to kill it part-way
    puller = subprocess.Popen([R1, "pull", "test/medium-GGUF"], env=hub_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: hub.served_bytes("test/medium-GGUF", model.name) >= 2_000_000, timeout=30)
        daemon.stop(signal.SIGKILL)
        before = hub.served_bytes("test/medium-GGUF", model.name)
        assert 2_000_000 <= before < size
        assert puller.wait(30) != 0
    finally:
        puller.kill()
        puller.wait()
    partials = {p.suffix for p in (daemon.home / "partial").iterdir()}
    assert partials == {".part", ".json"}, "the partial download and its state are kept"

    hub.throttle(None)
    restarted = start_daemon(hub_env, tmp_path / "restarted.log")
    try:
        restarted.cli("pull", "test/medium-GGUF")
        total = hub.served_bytes("test/medium-GGUF", model.name)
        # What was missing, plus at most one range fetched again.
        assert size <= total <= size + chunk_size(size, 4), (before, total)
        assert list((restarted.home / "partial").iterdir()) == []
        info = json.loads(restarted.cli("show", "test/medium-GGUF", "--json").stdout)
        assert info["files"][0]["digest"] == digest
    finally:
        assert restarted.stop() == 0, restarted.log()


# --- cancelling: `r1 pull` on a terminal, Ctrl-C, `r1 pull --cancel` ----------------------------


def pulls_under_way(daemon: Daemon) -> list[dict[str, object]]:
    """The first `pulls` event of GET /api/events (the console's view of the pulls)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(daemon.socket))
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = b""
        while not (found := re.search(rb"event: pulls\r?\ndata: (.*)\r?\n", received)):
            received += sock.recv(65536)
    return json.loads(found[1])["pulls"]


def transfer_stopped(hub: FakeHub) -> bool:
    """Whether the fake Hub serves no more bytes of TINY_Q4 (a chunk already in flight may still land)."""
    time.sleep(0.5)
    settled = hub.served_bytes(TINY_REPO, TINY_Q4)
    time.sleep(1.0)
    return hub.served_bytes(TINY_REPO, TINY_Q4) == settled


def no_trace_of_the_pull(daemon: Daemon) -> None:
    assert list((daemon.home / "partial").iterdir()) == [] and list((daemon.home / "blobs").iterdir()) == []
    assert pulls_under_way(daemon) == []
    status, answer = daemon.request("DELETE", "/api/pull", {"model": TINY_REPO})
    assert status == 404 and answer == {"error": f"no pull of {TINY_NAME} is under way"}
    assert daemon.request("GET", "/api/tags")[1]["models"] == []


def test_ctrl_c_cancels_the_pull(daemon: Daemon, hub: FakeHub, tiny_files: dict[str, Path]) -> None:
    hub.throttle(40_000)  # ten seconds for the tiny file
    term = Terminal(["pull", TINY_REPO], daemon.env)
    try:
        term.expect(f"pulling {digest_of(tiny_files[TINY_Q4])[7:19]}")  # the progress line
        wait_until(lambda: hub.served_bytes(TINY_REPO, TINY_Q4) > 0)
        term.type("\x03")
        assert term.wait() == 130
    finally:
        term.close()
    # The progress line ends (after the ^C the terminal echoes), then the message; the prompt comes next.
    assert term.output.endswith(f"^C\r\ncancelled the pull of {TINY_REPO}\r\n"), term.output[-300:]
    assert transfer_stopped(hub)
    assert hub.served_bytes(TINY_REPO, TINY_Q4) < tiny_files[TINY_Q4].stat().st_size
    no_trace_of_the_pull(daemon)


def test_ctrl_c_spares_a_pull_others_follow_and_pull_cancel_stops_it(daemon: Daemon, hub: FakeHub) -> None:
    hub.throttle(40_000)
    other = Stream(daemon.socket, "/api/pull", {"model": TINY_REPO})  # another client, following the same pull
    assert next(iter(other))["status"] == "pulling manifest"
    term = Terminal(["pull", TINY_REPO], daemon.env)
    try:
        term.expect("pulling ")
        term.type("\x03")
        assert term.wait() == 130
    finally:
        term.close()
    assert (f"1 other client follows the pull of {TINY_NAME}, so it goes on; `r1 pull --cancel {TINY_NAME}` stops it "
            "for every client") in " ".join(term.output.split())  # wrapped at the terminal's width
    going = hub.served_bytes(TINY_REPO, TINY_Q4)
    wait_until(lambda: hub.served_bytes(TINY_REPO, TINY_Q4) > going)  # it goes on

    cancelled = daemon.cli("pull", "--cancel", TINY_REPO)
    assert cancelled.stdout == f"cancelled the pull of {TINY_REPO}\n"
    assert list(other)[-1] == {"error": f"pull of {TINY_NAME} cancelled"}  # the follower hears why it ended
    other.close()
    assert transfer_stopped(hub)
    no_trace_of_the_pull(daemon)
    again = daemon.cli("pull", "--cancel", TINY_REPO, check=False)
    assert again.returncode == 1 and f"no pull of {TINY_NAME} is under way" in again.stderr
