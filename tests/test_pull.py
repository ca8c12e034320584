"""Pulls through a real daemon from a fake Hub on loopback, resolved by the real huggingface_hub client."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import R1, Daemon, start_daemon
from fakehub import FakeHub
from r1.daemon.pull.transfer import chunk_size
from tinymodels import write_split_gguf, write_tiny_mlx_folder

GEMMA_REPO = "test/gemma-3-270m-GGUF"
Q4, Q8 = "gemma-3-270m-Q4_K_M.gguf", "gemma-3-270m-Q8_0.gguf"
GEMMA_SIZE = 253_113_024
GEMMA_DIGEST = "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
TOKEN = "hf_test_token"


@pytest.fixture
def hub(gemma_path: Path) -> Iterator[FakeHub]:
    with FakeHub(token=TOKEN) as fake:
        # The same real GGUF under two quant names: enough to tell tags apart and to prove dedup.
        fake.add_repo(GEMMA_REPO, {Q4: gemma_path, Q8: gemma_path, "README.md": b"# Gemma\n"})
        yield fake


@pytest.fixture
def hub_env(daemon_env: dict[str, str], hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    env = {**daemon_env, **hub.env(), "HF_HOME": str(tmp_path / "hf")}  # no token from this machine
    env.pop("HF_TOKEN", None)
    env.pop("HF_HUB_OFFLINE", None)
    return env


@pytest.fixture
def daemon(hub_env: dict[str, str], tmp_path: Path) -> Iterator[Daemon]:
    running = start_daemon(hub_env, tmp_path / "daemon.log")
    yield running
    assert running.stop() == 0, running.log()


def models(daemon: Daemon) -> dict[str, dict]:
    return {m["name"]: m for m in json.loads(daemon.cli("list", "--json").stdout)}


def test_default_quant_then_explicit_quant_of_the_same_bytes_downloads_nothing(daemon: Daemon, hub: FakeHub) -> None:
    out = daemon.cli("pull", f"hf.co/{GEMMA_REPO}").stdout
    assert out.startswith(f"pulled hf.co/{GEMMA_REPO}:latest (Q4_K_M, 253 MB) from {GEMMA_REPO}: 253 MB downloaded")
    assert hub.served_bytes(GEMMA_REPO, Q4) == GEMMA_SIZE
    info = json.loads(daemon.cli("show", f"hf.co/{GEMMA_REPO}", "--json").stdout)
    assert info["files"] == [{"path": Q4, "digest": GEMMA_DIGEST, "size": GEMMA_SIZE, "present": True}]
    assert info["details"]["quantization_level"] == "Q4_K_M" and info["model_info"]["general.architecture"] == "gemma3"

    hub.reset_counters()
    out = daemon.cli("pull", f"{GEMMA_REPO}:q8_0").stdout
    assert "(Q8_0, 253 MB)" in out and ": 0 B downloaded" in out
    assert hub.served_bytes(GEMMA_REPO, Q8) == 0 and hub.served_bytes(GEMMA_REPO, Q4) == 0
    assert set(models(daemon)) == {f"hf.co/{GEMMA_REPO}:latest", f"hf.co/{GEMMA_REPO}:q8_0"}
    assert sorted(p.name for p in (daemon.home / "blobs").iterdir()) == [GEMMA_DIGEST.replace(":", "-")]
    assert list((daemon.home / "partial").iterdir()) == []

    hub.reset_counters()  # pulling again checks the Hub and moves no bytes
    assert ": 0 B downloaded" in daemon.cli("pull", f"hf.co/{GEMMA_REPO}").stdout
    assert hub.served_bytes(GEMMA_REPO, Q4) == 0


def test_split_gguf_and_mlx_repos(daemon: Daemon, hub: FakeHub, tmp_path: Path) -> None:
    shards = write_split_gguf(tmp_path / "split", "tiny-Q8_0", shards=3)
    hub.add_repo("test/split-GGUF", {f"Q8_0/{p.name}": p for p in shards} | {"README.md": b"x"})
    result = daemon.cli("pull", "test/split-GGUF")  # no Q4_K_M: the best that fits, and it says so
    assert "no Q4_K_M in test/split-GGUF: picked Q8_0, the best quantization that fits" in result.stderr
    info = json.loads(daemon.cli("show", "test/split-GGUF", "--json").stdout)
    assert [f["path"] for f in info["files"]] == [f"Q8_0/{p.name}" for p in shards]
    assert (Path(info["path"]) / "Q8_0" / shards[2].name).read_bytes() == shards[2].read_bytes()

    folder = write_tiny_mlx_folder(tmp_path / "mlx", quantized_bits=4)
    hub.add_repo("mlx-test/tiny-4bit", {p.name: p for p in folder.iterdir()} | {"images/logo.png": b"\x89PNG"})
    daemon.cli("pull", "mlx-test/tiny-4bit")
    info = json.loads(daemon.cli("show", "mlx-test/tiny-4bit", "--json").stdout)
    assert info["details"]["format"] == "mlx" and info["details"]["quantization_level"] == "4bit"
    paths = sorted(f["path"] for f in info["files"])
    assert "config.json" in paths and "model.safetensors" in paths
    assert not {"README.md", ".gitattributes", "images/logo.png"} & set(paths)
    result = daemon.cli("pull", "mlx-test/tiny-4bit:Q4_K_M", check=False)
    assert result.returncode == 1 and "single variant" in result.stderr


def test_a_dropped_connection_resumes_with_a_range(daemon: Daemon, hub: FakeHub) -> None:
    hub.drop_after(GEMMA_REPO, Q4, 3_000_000, times=2)
    daemon.cli("pull", GEMMA_REPO)
    served = hub.served_bytes(GEMMA_REPO, Q4)
    assert GEMMA_SIZE <= served <= GEMMA_SIZE + 2 * 3_000_000
    ranges = [r for method, path, r in hub.requests if method == "GET" and path.endswith(Q4)]
    assert all(r and r.startswith("bytes=") for r in ranges)
    assert models(daemon)[f"hf.co/{GEMMA_REPO}:latest"]["size"] == GEMMA_SIZE


def test_a_daemon_killed_mid_pull_resumes_after_restart(hub: FakeHub, hub_env: dict[str, str], tmp_path: Path) -> None:
    daemon = start_daemon(hub_env, tmp_path / "killed.log")
    hub.throttle(8_000_000)  # per connection: slow enough to kill it part-way
    puller = subprocess.Popen([R1, "pull", GEMMA_REPO], env=hub_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while hub.served_bytes(GEMMA_REPO, Q4) < 60_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon.stop(signal.SIGKILL)
    before = hub.served_bytes(GEMMA_REPO, Q4)
    assert 60_000_000 <= before < GEMMA_SIZE
    puller.wait(30)
    assert puller.returncode != 0
    partials = {p.suffix for p in (daemon.home / "partial").iterdir()}
    assert partials == {".part", ".json"}, "the partial download and its state are kept"

    hub.throttle(None)
    restarted = start_daemon(hub_env, tmp_path / "restarted.log")
    try:
        restarted.cli("pull", GEMMA_REPO)
        total = hub.served_bytes(GEMMA_REPO, Q4)
        # What was missing, plus at most one range fetched again.
        assert total <= GEMMA_SIZE + chunk_size(GEMMA_SIZE, 4), (before, total)
        assert list((restarted.home / "partial").iterdir()) == []
        info = json.loads(restarted.cli("show", GEMMA_REPO, "--json").stdout)
        assert info["files"][0]["digest"] == GEMMA_DIGEST
    finally:
        assert restarted.stop() == 0


def test_a_corrupt_download_is_discarded_and_retried_once(daemon: Daemon, hub: FakeHub) -> None:
    hub.corrupt(GEMMA_REPO, Q4, times=1)
    daemon.cli("pull", GEMMA_REPO)
    assert "failed its sha256 check" in daemon.log() and "downloading it again" in daemon.log()
    assert f"hf.co/{GEMMA_REPO}:latest" in models(daemon)


def test_a_download_corrupt_twice_is_a_clear_error(daemon: Daemon, hub: FakeHub) -> None:
    hub.corrupt(GEMMA_REPO, Q4, times=1000)  # every range of both attempts
    result = daemon.cli("pull", GEMMA_REPO, check=False)
    assert result.returncode == 1
    assert f"{Q4} from {GEMMA_REPO} failed its sha256 check twice" in result.stderr
    assert models(daemon) == {}
    assert list((daemon.home / "blobs").iterdir()) == [] and list((daemon.home / "partial").iterdir()) == []


def test_unknown_repo_tag_and_gated_repo_errors(daemon: Daemon, hub: FakeHub, hub_env: dict[str, str], tmp_path: Path) -> None:
    status, body = daemon.request("POST", "/api/pull", {"model": "test/nosuch"})
    assert status == 404 and body["error"].startswith("no model repo 'test/nosuch'")
    status, body = daemon.request("POST", "/api/pull", {"model": f"{GEMMA_REPO}:Q9_9"})
    assert status == 404 and body["error"] == f"{GEMMA_REPO} has no GGUF file for tag 'Q9_9'; its tags are: Q8_0, Q4_K_M"
    status, body = daemon.request("POST", "/api/pull", {"model": "nosuch:7b"})
    assert status == 404 and "r1 search" in body["error"]
    status, body = daemon.request("POST", "/api/pull", {"model": "../../etc/passwd"})
    assert status == 400 and "invalid model name" in body["error"]

    hub.add_repo("test/gated-GGUF", {"m-Q4_K_M.gguf": b"GGUF" + b"\0" * 100}, gated=True)
    result = daemon.cli("pull", "test/gated-GGUF", check=False)
    assert result.returncode == 1 and "is gated" in result.stderr and "HF_TOKEN" in result.stderr
    assert models(daemon) == {}


def test_gated_repo_with_a_token(hub: FakeHub, hub_env: dict[str, str], tmp_path: Path, gemma_path: Path) -> None:
    hub.add_repo("test/gated-GGUF", {Q4: gemma_path}, gated=True)
    running = start_daemon({**hub_env, "HF_TOKEN": TOKEN}, tmp_path / "token.log")
    try:
        assert running.cli("pull", "test/gated-GGUF").returncode == 0
    finally:
        assert running.stop() == 0


def test_two_clients_pulling_one_model_share_one_transfer(daemon: Daemon, hub: FakeHub, hub_env: dict[str, str]) -> None:
    hub.throttle(40_000_000)
    pullers = [subprocess.Popen([R1, "pull", GEMMA_REPO], env=hub_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in pullers]
    assert [p.returncode for p in pullers] == [0, 0], outputs
    assert all(out.startswith(f"pulled hf.co/{GEMMA_REPO}:latest") for out, _ in outputs)
    assert hub.served_bytes(GEMMA_REPO, Q4) == GEMMA_SIZE


def test_the_pull_goes_on_when_the_client_leaves(daemon: Daemon, hub: FakeHub, hub_env: dict[str, str]) -> None:
    hub.throttle(40_000_000)
    puller = subprocess.Popen([R1, "pull", GEMMA_REPO], env=hub_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while hub.served_bytes(GEMMA_REPO, Q4) < 10_000_000:
        time.sleep(0.05)
    puller.kill()
    deadline = time.monotonic() + 60
    while f"hf.co/{GEMMA_REPO}:latest" not in models(daemon) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"hf.co/{GEMMA_REPO}:latest" in models(daemon)
    assert hub.served_bytes(GEMMA_REPO, Q4) == GEMMA_SIZE


def test_api_pull_progress_in_ollamas_shape(daemon: Daemon) -> None:
    status, body = daemon.request("POST", "/api/pull", {"model": GEMMA_REPO, "stream": False})
    assert status == 200 and body["status"] == "success"
    status, text = daemon.request("POST", "/api/pull", {"name": f"{GEMMA_REPO}:Q8_0"})
    events = [json.loads(line) for line in text.splitlines()]
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    progress = [e for e in events if "total" in e]
    assert progress and all(e["digest"] == GEMMA_DIGEST and e["total"] == GEMMA_SIZE for e in progress)
    assert progress[-1]["completed"] == GEMMA_SIZE and progress[-1]["status"] == "pulling a5fd3b62230a"


def test_offline_mode(hub_env: dict[str, str], tmp_path: Path) -> None:
    running = start_daemon({**hub_env, "HF_HUB_OFFLINE": "1"}, tmp_path / "offline.log")
    try:
        result = running.cli("pull", GEMMA_REPO, check=False)
        assert result.returncode == 1 and "HF_HUB_OFFLINE is set" in result.stderr
    finally:
        assert running.stop() == 0


def test_catalog_is_searchable(daemon: Daemon) -> None:
    out = daemon.cli("search", "deepseek", "mlx").stdout.splitlines()
    assert out[0].split()[:3] == ["NAME", "REPO", "QUANT"]
    assert any(line.startswith("deepseek-r1:7b-mlx-4bit") for line in out)
    assert all("mlx" in line.lower() for line in out[1:])
    available = json.loads(daemon.cli("list", "--available", "--json").stdout)
    assert {"deepseek-r1:1.5b", "deepseek-r1:70b"} <= {m["name"] for m in available}


def test_not_enough_space_keeps_nothing_half_done(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process: the transfer checks free space before it writes, and says what to do."""
    import asyncio
    import shutil

    import aiohttp

    from r1.daemon.errors import InsufficientStorage
    from r1.daemon.pull.transfer import RangedDownload
    from r1.daemon.store.blobs import BlobStore

    blobs = BlobStore(tmp_path / "home")
    blobs.create_dirs()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))

    async def pull() -> None:
        async with aiohttp.ClientSession() as session:
            url = f"{hub.url}/{GEMMA_REPO}/resolve/main/{Q4}"
            await RangedDownload(session, url, {}, GEMMA_SIZE, GEMMA_DIGEST, blobs, 4).run()

    with pytest.raises(InsufficientStorage) as info:
        asyncio.run(pull())
    assert f"needs {GEMMA_SIZE:,} bytes" in str(info.value) and "r1 rm" in str(info.value)
    assert hub.served_bytes(GEMMA_REPO, Q4) == 0
    assert list(blobs.dir.iterdir()) == []
