"""The fake Hub (tests/support/fakehub.py) answers the REAL huggingface_hub client the way huggingface.co does."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

from tests.support.fakehub import FakeHub
from tests.support.polling import wait_until

TOKEN = "hf_fake_token_for_tests"
REPO = "org/tiny-GGUF"
GGUF = bytes(range(256)) * 40  # 10,240 bytes: LFS by its suffix
SHARD1 = b"shard-one " * 300
SHARD2 = b"shard-two " * 200
CONFIG = b'{"architectures": ["LlamaForCausalLM"]}'
FILES = {
    "tiny-Q4_K_M.gguf": GGUF,
    "config.json": CONFIG,
    "Q8_0/tiny-Q8_0-00001-of-00002.gguf": SHARD1,
    "Q8_0/tiny-Q8_0-00002-of-00002.gguf": SHARD2,
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(autouse=True)
def hf_client_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No telemetry call to huggingface.co and no token from the environment or a login on this machine."""
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # huggingface_hub read the variable at import: its constant is what it checks per request.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    # Nor the agent registry the client caches in ~/.cache/huggingface.
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(token=TOKEN) as h:
        yield h


@pytest.fixture
def api(hub: FakeHub) -> HfApi:
    return HfApi(endpoint=hub.url)


def get(url: str, range_: str | None = None, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP GET with nothing of huggingface_hub in between."""
    req = urllib.request.Request(url)
    if range_:
        req.add_header("Range", range_)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.mark.unit
def test_model_info_files_metadata(hub: FakeHub, api: HfApi) -> None:
    commit = hub.add_repo(REPO, FILES)
    info = api.model_info(REPO, files_metadata=True)
    assert info.id == REPO and info.sha == commit and info.gated is False and info.private is False
    sib = {s.rfilename: s for s in info.siblings}
    assert set(sib) == set(FILES)
    gguf = sib["tiny-Q4_K_M.gguf"]
    assert gguf.size == len(GGUF)
    assert gguf.lfs is not None and gguf.lfs.sha256 == sha256(GGUF) and gguf.lfs.size == len(GGUF)
    cfg = sib["config.json"]
    assert cfg.size == len(CONFIG) and cfg.blob_id == git_sha1(CONFIG) and cfg.lfs is None
    # Without files_metadata the Hub only names the files.
    plain = api.model_info(REPO)
    assert {s.rfilename for s in plain.siblings} == set(FILES)
    assert all(s.size is None and s.lfs is None for s in plain.siblings)
    assert hub.requests[0][:2] == ("GET", f"/api/models/{REPO}?blobs=true")


@pytest.mark.unit
def test_revisions_and_commits(hub: FakeHub, api: HfApi, tmp_path: Path) -> None:
    first = hub.add_repo(REPO, FILES)
    assert len(first) == 40 and int(first, 16) >= 0
    assert hub.add_repo(REPO, dict(FILES)) == first  # same content, same commit
    assert api.model_info(REPO, revision=first).sha == first
    second = hub.add_repo(REPO, {**FILES, "config.json": b"{}"})
    assert second != first
    assert api.model_info(REPO).sha == second
    # The old commit stays reachable by its sha, with its own files, as on the Hub.
    old = api.model_info(REPO, revision=first, files_metadata=True)
    assert {s.rfilename: s.size for s in old.siblings}["config.json"] == len(CONFIG)
    path = hf_hub_download(REPO, "config.json", revision=first, endpoint=hub.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == CONFIG
    # A branch whose name has a "/" travels URL-encoded.
    pr = hub.add_repo(REPO, {"config.json": b"pr"}, revision="refs/pr/1")
    assert api.model_info(REPO, revision="refs/pr/1").sha == pr
    assert api.model_info(REPO).sha == second  # main untouched
    path = hf_hub_download(REPO, "config.json", revision="refs/pr/1", endpoint=hub.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"pr"


@pytest.mark.unit
def test_list_repo_tree(hub: FakeHub, api: HfApi) -> None:
    hub.add_repo(REPO, FILES)
    entries = list(api.list_repo_tree(REPO, recursive=True))
    folders = [e.path for e in entries if isinstance(e, RepoFolder)]
    files = {e.path: e for e in entries if isinstance(e, RepoFile)}
    assert folders == ["Q8_0"]
    assert set(files) == set(FILES)
    shard = files["Q8_0/tiny-Q8_0-00001-of-00002.gguf"]
    assert shard.size == len(SHARD1) and shard.lfs is not None and shard.lfs.sha256 == sha256(SHARD1)
    assert files["config.json"].lfs is None and files["config.json"].blob_id == git_sha1(CONFIG)
    # Not recursive: direct children only.
    top = list(api.list_repo_tree(REPO))
    assert sorted(e.path for e in top) == ["Q8_0", "config.json", "tiny-Q4_K_M.gguf"]
    sub = list(api.list_repo_tree(REPO, path_in_repo="Q8_0"))
    assert sorted(e.path for e in sub) == sorted(p for p in FILES if p.startswith("Q8_0/"))
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(REPO, path_in_repo="nope"))


@pytest.mark.unit
def test_hf_hub_download_lfs_and_git_files(hub: FakeHub, tmp_path: Path) -> None:
    commit = hub.add_repo(REPO, FILES)
    for name in ("tiny-Q4_K_M.gguf", "config.json", "Q8_0/tiny-Q8_0-00002-of-00002.gguf"):
        path = Path(hf_hub_download(REPO, name, endpoint=hub.url, cache_dir=tmp_path))
        assert path.read_bytes() == FILES[name]
        assert commit in path.parts  # snapshots/<commit>/...
    # One HEAD for the metadata, then one GET for the body, per file.
    methods = [(m, p) for m, p, _ in hub.requests if "/resolve/" in p]
    assert methods[:2] == [("HEAD", f"/{REPO}/resolve/main/tiny-Q4_K_M.gguf"),
                           ("GET", f"/{REPO}/resolve/main/tiny-Q4_K_M.gguf")]
    # The blob is stored under its ETag: the sha256 for LFS, the git sha1 otherwise.
    blobs = {p.name for p in (tmp_path / "models--org--tiny-GGUF" / "blobs").iterdir()}
    assert {sha256(GGUF), git_sha1(CONFIG)} <= blobs


@pytest.mark.unit
def test_resolve_headers_and_ranges(hub: FakeHub) -> None:
    commit = hub.add_repo(REPO, FILES)
    url = f"{hub.url}/{REPO}/resolve/main/tiny-Q4_K_M.gguf"
    req = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as r:
        h = r.headers
        assert r.status == 200 and r.read() == b""
    assert h["X-Repo-Commit"] == commit and h["ETag"] == f'"{sha256(GGUF)}"'
    assert h["X-Linked-Etag"] == f'"{sha256(GGUF)}"' and h["X-Linked-Size"] == str(len(GGUF))
    assert h["Content-Length"] == str(len(GGUF)) and h["Accept-Ranges"] == "bytes"

    status, headers, body = get(url, "bytes=100-199")
    assert status == 206 and body == GGUF[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(GGUF)}" and headers["Content-Length"] == "100"
    status, headers, body = get(url, "bytes=10000-")
    assert status == 206 and body == GGUF[10000:] and headers["Content-Range"] == f"bytes 10000-10239/{len(GGUF)}"
    status, headers, _ = get(url, f"bytes={len(GGUF)}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(GGUF)}"
    status, _, body = get(url)
    assert status == 200 and body == GGUF
    # Git files: the ETag is the blob sha1 and there is no X-Linked-*.
    status, headers, body = get(f"{hub.url}/{REPO}/resolve/{commit}/config.json")
    assert status == 200 and body == CONFIG and headers["ETag"] == f'"{git_sha1(CONFIG)}"'
    assert "X-Linked-Etag" not in headers
    assert hub.requests[-1] == ("GET", f"/{REPO}/resolve/{commit}/config.json", None)
    assert ("GET", f"/{REPO}/resolve/main/tiny-Q4_K_M.gguf", "bytes=100-199") in hub.requests


@pytest.mark.unit
def test_errors_as_the_client_reads_them(hub: FakeHub, api: HfApi, tmp_path: Path) -> None:
    hub.add_repo(REPO, FILES)
    with pytest.raises(RepositoryNotFoundError) as e:
        api.model_info("org/missing")
    assert not isinstance(e.value, GatedRepoError)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/missing", "x.gguf", endpoint=hub.url, cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="v9")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="0" * 40, endpoint=hub.url, cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.gguf", endpoint=hub.url, cache_dir=tmp_path)
    status, headers, body = get(f"{hub.url}/{REPO}/resolve/main/missing.gguf")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound" and "error" in json.loads(body)
    status, headers, body = get(f"{hub.url}/api/whatever")
    assert status == 404 and "error" in json.loads(body)


@pytest.mark.unit
def test_gated_repo(hub: FakeHub, tmp_path: Path) -> None:
    gated = "org/gated-GGUF"
    hub.add_repo(gated, {"m.gguf": GGUF}, gated=True)
    with pytest.raises(GatedRepoError):
        HfApi(endpoint=hub.url).model_info(gated)
    with pytest.raises(GatedRepoError):
        hf_hub_download(gated, "m.gguf", endpoint=hub.url, cache_dir=tmp_path)
    with pytest.raises(GatedRepoError):
        HfApi(endpoint=hub.url, token="hf_wrong").model_info(gated)
    status, headers, _ = get(f"{hub.url}/{gated}/resolve/main/m.gguf")
    assert status == 401 and headers["X-Error-Code"] == "GatedRepo" and "restricted" in headers["X-Error-Message"]

    info = HfApi(endpoint=hub.url, token=TOKEN).model_info(gated, files_metadata=True)
    assert info.gated == "auto" and info.siblings[0].lfs.sha256 == sha256(GGUF)
    path = hf_hub_download(gated, "m.gguf", endpoint=hub.url, cache_dir=tmp_path, token=TOKEN)
    assert Path(path).read_bytes() == GGUF
    assert get(f"{hub.url}/{gated}/resolve/main/m.gguf", "bytes=0-9", token=TOKEN)[2] == GGUF[:10]


@pytest.mark.unit
def test_drop_after_cuts_the_body_once(hub: FakeHub) -> None:
    hub.add_repo(REPO, FILES)
    url = f"{hub.url}/{REPO}/resolve/main/tiny-Q4_K_M.gguf"
    hub.drop_after(REPO, "tiny-Q4_K_M.gguf", 1000)
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Length"] == str(len(GGUF))
        with pytest.raises(http.client.IncompleteRead) as e:
            r.read()
    assert e.value.partial == GGUF[:1000]
    assert hub.served_bytes(REPO, "tiny-Q4_K_M.gguf") == 1000
    assert get(url)[2] == GGUF  # only the next GET was cut
    # Also within a ranged GET: nbytes counts from the start of that body.
    hub.drop_after(REPO, "tiny-Q4_K_M.gguf", 10, times=2)
    for _ in range(2):
        req = urllib.request.Request(url, headers={"Range": "bytes=5000-"})
        with urllib.request.urlopen(req, timeout=10) as r, pytest.raises(http.client.IncompleteRead) as e:
            r.read()
        assert e.value.partial == GGUF[5000:5010]
    assert get(url, "bytes=5000-")[2] == GGUF[5000:]
    # An aiohttp client (what a daemon would use) sees a payload error, not a clean end.
    hub.drop_after(REPO, "tiny-Q4_K_M.gguf", 2000)
    got = bytearray()

    async def fetch() -> None:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            async for chunk in resp.content.iter_any():
                got.extend(chunk)

    with pytest.raises(aiohttp.ClientPayloadError):
        asyncio.run(fetch())
    assert bytes(got) == GGUF[:2000]


def test_hf_hub_download_resumes_after_a_drop(hub: FakeHub, tmp_path: Path) -> None:
    """What the real client does with a body cut short (httpx2 RemoteProtocolError): it sleeps 1 s and
    retries within the same call, with a Range from what it has written. It writes in 10 MiB chunks, so a cut
    before the first 10 MiB starts the file again from byte 0."""
    hub.add_repo(REPO, FILES)
    hub.drop_after(REPO, "tiny-Q4_K_M.gguf", 4096)
    path = hf_hub_download(REPO, "tiny-Q4_K_M.gguf", endpoint=hub.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == GGUF
    gets = [r for r in hub.requests if r[0] == "GET"]
    assert [r[2] for r in gets] == [None, None]
    assert hub.served_bytes(REPO, "tiny-Q4_K_M.gguf") == 4096 + len(GGUF)


@pytest.mark.unit
def test_corrupt_flips_a_byte_once(hub: FakeHub) -> None:
    hub.add_repo(REPO, FILES)
    url = f"{hub.url}/{REPO}/resolve/main/tiny-Q4_K_M.gguf"
    hub.corrupt(REPO, "tiny-Q4_K_M.gguf")
    status, _, body = get(url)
    assert status == 200 and len(body) == len(GGUF) and sha256(body) != sha256(GGUF)
    assert sum(a != b for a, b in zip(body, GGUF)) == 1
    assert sha256(get(url)[2]) == sha256(GGUF)
    hub.corrupt(REPO, "config.json", times=2)
    assert get(f"{hub.url}/{REPO}/resolve/main/config.json", "bytes=3-")[2] != CONFIG[3:]
    assert get(f"{hub.url}/{REPO}/resolve/main/config.json")[2] != CONFIG
    assert get(f"{hub.url}/{REPO}/resolve/main/config.json")[2] == CONFIG


def test_served_bytes_throttle_and_reset(hub: FakeHub) -> None:
    hub.add_repo(REPO, FILES)
    url = f"{hub.url}/{REPO}/resolve/main/tiny-Q4_K_M.gguf"
    get(url)
    get(url, "bytes=0-99")
    urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10).close()  # HEAD: no body
    assert hub.served_bytes(REPO, "tiny-Q4_K_M.gguf") == len(GGUF) + 100
    assert hub.served_bytes(REPO, "config.json") == 0
    hub.reset_counters()
    assert hub.served_bytes(REPO, "tiny-Q4_K_M.gguf") == 0 and hub.requests == []

    # Throttled, the body goes out a slice at a time: 1 KiB every half second here, so while the
    # first slice is read the rest is still held back. Unthrottled mid-way, the rest comes at once.
    hub.throttle(2048)
    with urllib.request.urlopen(url, timeout=30) as r:
        first = r.read(1024)
        wait_until(lambda: hub.served_bytes(REPO, "tiny-Q4_K_M.gguf") > 0)
        assert hub.served_bytes(REPO, "tiny-Q4_K_M.gguf") < len(GGUF)
        hub.throttle(None)
        body = first + r.read()
    assert body == GGUF
    # The hub counts a slice once its write returns, which can be just after the client has it.
    wait_until(lambda: hub.served_bytes(REPO, "tiny-Q4_K_M.gguf") == len(GGUF))
    assert get(url)[2] == GGUF
    hub.reset_counters()
    assert hub.served_bytes(REPO, "tiny-Q4_K_M.gguf") == 0 and hub.requests == []


def test_streams_a_large_file_from_disk(hub: FakeHub, tmp_path: Path) -> None:
    big = tmp_path / "big.gguf"
    block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
    with open(big, "wb") as f:
        for i in range(20):
            f.write(bytes([i]) + block[1:])
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    notes = tmp_path / "n.txt"
    notes.write_bytes(b"n")
    hub.add_repo("org/big", {"big.gguf": big, "notes.txt": notes})
    info = HfApi(endpoint=hub.url).model_info("org/big", files_metadata=True)
    sib = {s.rfilename: s for s in info.siblings}
    assert sib["big.gguf"].lfs.sha256 == digest and sib["big.gguf"].size == 20 * 2**20
    assert sib["notes.txt"].blob_id == git_sha1(b"n")
    path = hf_hub_download("org/big", "big.gguf", endpoint=hub.url, cache_dir=tmp_path / "cache")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert h.hexdigest() == digest
    status, _, body = get(f"{hub.url}/org/big/resolve/main/big.gguf", f"bytes={19 * 2**20}-{19 * 2**20 + 3}")
    assert status == 206 and body == bytes([19]) + block[1:4]


def test_another_process_reaches_it_through_hf_endpoint(hub: FakeHub) -> None:
    commit = hub.add_repo(REPO, FILES)
    code = ("from huggingface_hub import HfApi; "
            f"print(HfApi().model_info({REPO!r}).sha)")
    env = {**os.environ, **hub.env()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == commit


@pytest.mark.unit
def test_agent_harnesses_and_restart(hub: FakeHub) -> None:
    status, _, body = get(f"{hub.url}/api/agent-harnesses")
    assert status == 200 and json.loads(body) == {"standardEnvVars": [], "harnesses": {}}
    hub.stop()
    hub.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{hub.url}/api/agent-harnesses", timeout=2)
