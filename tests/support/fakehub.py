"""A fake Hugging Face Hub on 127.0.0.1 for tests, good enough for the real huggingface_hub 2.4 client.

It runs on loopback.py's server in a background thread, so synchronous tests and other processes
(a daemon started with ``HF_ENDPOINT=hub.url``) can all use it. Nothing leaves loopback. It serves what
``HfApi.model_info(files_metadata=True)``, ``HfApi.list_repo_tree``, ``get_hf_file_metadata`` /
``hf_hub_download`` and a plain ranged GET on a ``resolve`` URL need,
and answers errors the way the client expects them (the ``X-Error-Code`` header).

Failure knobs (``drop_after``, ``corrupt``, ``throttle``) act on ``GET .../resolve/...`` bodies.

    with FakeHub(token="hf_secret") as hub:
        commit = hub.add_repo("org/model-GGUF", {"model-Q4_K_M.gguf": gguf_path, "README.md": b"hi"})
        HfApi(endpoint=hub.url).model_info("org/model-GGUF", files_metadata=True)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .loopback import LoopbackServer, Unsatisfiable, cut_off, parse_range

CHUNK = 64 * 1024
LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")
LFS_THRESHOLD = 1 << 20  # the Hub stores anything over 1 MiB (roughly) in LFS

# The real registry's shape: the client calls .get() on it, so an empty list would break every request.
EMPTY_AGENT_REGISTRY = {"standardEnvVars": [], "harnesses": {}}


# --- hashing -------------------------------------------------------------------------------------

# (resolved path, mtime_ns, size, kind) -> hex digest; module-wide so a 253 MB file is hashed once per process.
_HASH_CACHE: dict[tuple[str, int, int, str], str] = {}
_HASH_LOCK = threading.Lock()


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _hash_path(path: Path, kind: str) -> str:
    """sha256 of the file ("sha256") or its git blob sha1 ("git"), streamed and cached."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, kind)
    with _HASH_LOCK:
        if key in _HASH_CACHE:
            return _HASH_CACHE[key]
    h = hashlib.sha256() if kind == "sha256" else hashlib.sha1(b"blob %d\0" % st.st_size)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    digest = h.hexdigest()
    with _HASH_LOCK:
        _HASH_CACHE[key] = digest
    return digest


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


# --- repo model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    path: str
    size: int
    data: bytes | None  # content held in memory, or
    source: Path | None  # a file streamed from disk
    blob_id: str  # git blob sha1: of the content for git files, of the LFS pointer for LFS files
    sha256: str | None = None  # LFS files only
    pointer_size: int | None = None

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id


@dataclass
class _Commit:
    sha: str
    files: dict[str, _File]
    date: str


@dataclass
class _Repo:
    repo_id: str
    gated: bool
    created: str
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit sha
    commits: dict[str, _Commit] = field(default_factory=dict)  # old commits stay reachable by sha, as on the Hub


def _make_file(path: str, content: bytes | os.PathLike[str]) -> _File:
    if isinstance(content, (bytes, bytearray, memoryview)):
        data = bytes(content)
        lfs = path.lower().endswith(LFS_SUFFIXES) or len(data) > LFS_THRESHOLD
        if not lfs:
            return _File(path, len(data), data, None, _git_blob_sha1(data))
        size, sha256, source = len(data), hashlib.sha256(data).hexdigest(), None
    else:
        data, source = None, Path(content)
        size = source.stat().st_size
        if not (path.lower().endswith(LFS_SUFFIXES) or size > LFS_THRESHOLD):
            return _File(path, size, None, source, _hash_path(source, "git"))
        sha256 = _hash_path(source, "sha256")
    pointer = _lfs_pointer(sha256, size)
    return _File(path, size, data, source, _git_blob_sha1(pointer), sha256, len(pointer))


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _error(status: int, code: str | None, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    # The client reads X-Error-Code (and X-Error-Message) to pick its exception; the body is for humans.
    h = {"X-Error-Message": message, **(headers or {})}
    if code:
        h["X-Error-Code"] = code
    return web.json_response({"error": message}, status=status, headers=h)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


# --- the server ----------------------------------------------------------------------------------


class FakeHub(LoopbackServer):
    """A set of model repos served over HTTP like huggingface.co serves them."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token  # the one bearer token that opens gated repos; None: gated repos never open
        self._repos: dict[str, _Repo] = {}
        self._drops: dict[tuple[str, str], tuple[int, int]] = {}  # -> (nbytes, times left)
        self._corrupts: dict[tuple[str, str], int] = {}  # -> times left
        self._bps: int | None = None
    def __enter__(self) -> FakeHub:
        return self.start()

    def env(self) -> dict[str, str]:
        """Environment for a process that should use this Hub (huggingface_hub reads these at import)."""
        return {"HF_ENDPOINT": self.url, "HF_HUB_DISABLE_TELEMETRY": "1"}

    # -- content --

    def add_repo(self, repo_id: str, files: Mapping[str, bytes | Path], *, gated: bool = False,
                 revision: str = "main") -> str:
        """Create or replace `revision` (a branch) of a repo; returns its new commit sha.

        Path contents are hashed now and streamed from disk on each GET: don't change them afterwards.
        """
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise ValueError(f"repo_id must be 'org/name', not {repo_id!r}")
        entries = {p.strip("/"): _make_file(p.strip("/"), c) for p, c in files.items()}
        # Deterministic: same names + digests give the same commit, any change gives another.
        h = hashlib.sha1(repo_id.encode() + b"\n")
        for p in sorted(entries):
            h.update(f"{p}\0{entries[p].etag}\n".encode())
        sha = h.hexdigest()
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                repo = self._repos[repo_id] = _Repo(repo_id, gated, _now_iso())
            repo.gated = gated
            if sha not in repo.commits:
                repo.commits[sha] = _Commit(sha, entries, _now_iso())
            repo.branches[revision] = sha
        return sha

    # -- knobs --

    def drop_after(self, repo_id: str, path: str, nbytes: int, times: int = 1) -> None:
        """The next `times` GETs of the file end the connection after `nbytes` of body (an incomplete payload)."""
        with self._lock:
            self._drops[(repo_id, path)] = (nbytes, times)

    def corrupt(self, repo_id: str, path: str, times: int = 1) -> None:
        """The next `times` GETs of the file have the first body byte flipped (right length, wrong sha256)."""
        with self._lock:
            self._corrupts[(repo_id, path)] = times

    def throttle(self, bytes_per_second: int | None) -> None:
        """Pace every resolve GET body at this rate (also transfers already under way); None: full speed."""
        with self._lock:
            self._bps = bytes_per_second if bytes_per_second else None

    def served_bytes(self, repo_id: str, path: str) -> int:
        return self._served_bytes((repo_id, path))

    # -- request handling (event loop thread) --

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._log(request.method, request.path_qs, request.headers.get("Range"))  # (method, path_qs, Range header)
        # Split the raw path so that an encoded "/" (revision "refs%2Fpr%2F1") stays inside its segment.
        segs = [unquote(s) for s in request.raw_path.split("?", 1)[0].strip("/").split("/")]
        method = request.method
        if segs == ["api", "agent-harnesses"] and method in ("GET", "HEAD"):
            return web.json_response(EMPTY_AGENT_REGISTRY)
        if len(segs) >= 4 and segs[:2] == ["api", "models"] and method in ("GET", "HEAD"):
            return self._api(request, f"{segs[2]}/{segs[3]}", segs[4:])
        if len(segs) >= 5 and segs[2] == "resolve" and method in ("GET", "HEAD"):
            return await self._resolve(request, f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:]))
        return _error(404, None, f"Sorry, we can't find the page you are looking for: {request.path}")

    def _lookup(self, request: web.Request, repo_id: str, revision: str) -> _Commit | web.Response:
        """The commit, or the error response the Hub would give (repo, then access, then revision)."""
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                return _error(404, "RepoNotFound", "Repository not found")
            if repo.gated and self.token is not None:
                auth = request.headers.get("Authorization", "")
                allowed = auth.lower().startswith("bearer ") and auth[7:].strip() == self.token
            else:
                allowed = not repo.gated
            if not allowed:
                # The client turns X-Error-Code: GatedRepo into GatedRepoError whatever the status.
                if "Authorization" not in request.headers:
                    return _error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access "
                                  "to it and be authenticated to access it. Please log in.")
                return _error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the "
                              "authorized list. Visit the model page to ask for access.")
            sha = repo.branches.get(revision, revision)
            commit = repo.commits.get(sha)
            if commit is None:
                return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return commit

    def _api(self, request: web.Request, repo_id: str, rest: list[str]) -> web.Response:
        if not rest:
            revision, what, sub = "main", "info", ""
        elif rest[0] == "revision" and len(rest) == 2:
            revision, what, sub = rest[1], "info", ""
        elif rest[0] == "tree" and len(rest) >= 2:
            revision, what, sub = rest[1], "tree", "/".join(rest[2:]).strip("/")
        else:
            return _error(404, None, "Not found")
        found = self._lookup(request, repo_id, revision)
        if isinstance(found, web.Response):
            return found
        commit = found
        if what == "info":
            return web.json_response(self._model_info(repo_id, commit, _truthy(request.query.get("blobs"))))
        recursive = _truthy(request.query.get("recursive"))
        entries = self._tree(commit, sub, recursive)
        if entries is None:
            return _error(404, "EntryNotFound", f"{sub} does not exist on \"{revision}\"",
                          {"X-Repo-Commit": commit.sha})
        return web.json_response(entries)

    def _model_info(self, repo_id: str, commit: _Commit, blobs: bool) -> dict[str, Any]:
        with self._lock:
            repo = self._repos[repo_id]
            gated, created = repo.gated, repo.created
        siblings = []
        for f in sorted(commit.files.values(), key=lambda f: f.path):
            s: dict[str, Any] = {"rfilename": f.path}
            if blobs:  # as the Hub: sizes, blob ids and LFS data only with ?blobs=true
                s["size"] = f.size
                s["blobId"] = f.blob_id
                if f.is_lfs:
                    s["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": f.pointer_size}
            siblings.append(s)
        return {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": created,
            "private": False,
            "gated": "auto" if gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }

    @staticmethod
    def _tree(commit: _Commit, sub: str, recursive: bool) -> list[dict[str, Any]] | None:
        prefix = f"{sub}/" if sub else ""
        files = [f for p, f in commit.files.items() if p.startswith(prefix)]
        if sub and not files:
            return None  # not a directory of this commit
        dirs: set[str] = set()
        for f in files:
            parts = f.path.split("/")
            for i in range(1, len(parts)):
                dirs.add("/".join(parts[:i]))
        depth = sub.count("/") + 1 if sub else 0

        def wanted(path: str) -> bool:
            return path.startswith(prefix) and (recursive or path.count("/") == depth)

        out: list[dict[str, Any]] = []
        for d in sorted(x for x in dirs if wanted(x)):
            # A stable stand-in for the git tree id: derived from what the directory holds.
            oid = hashlib.sha1("".join(f"{p}\0{f.etag}\n" for p, f in sorted(commit.files.items())
                                       if p.startswith(d + "/")).encode()).hexdigest()
            out.append({"type": "directory", "oid": oid, "size": 0, "path": d})
        for f in sorted((f for f in files if wanted(f.path)), key=lambda f: f.path):
            e: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
            if f.is_lfs:
                e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            out.append(e)
        return out

    async def _resolve(self, request: web.Request, repo_id: str, revision: str, path: str) -> web.StreamResponse:
        found = self._lookup(request, repo_id, revision)
        if isinstance(found, web.Response):
            return found
        commit = found
        f = commit.files.get(path)
        if f is None:
            # X-Repo-Commit here too: the client caches the file's absence under that commit.
            return _error(404, "EntryNotFound", f"{path} does not exist on \"{revision}\"",
                          {"X-Repo-Commit": commit.sha})
        headers = {
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{f.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        if f.is_lfs:  # the client prefers these to ETag / Content-Length
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(f.size)
        try:
            rng = parse_range(request.headers.get("Range"), f.size)
        except Unsatisfiable:
            return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{f.size}"})
        start, end = rng if rng is not None else (0, f.size - 1)
        length = end - start + 1
        resp = web.StreamResponse(status=206 if rng is not None else 200, headers=headers)
        if rng is not None:
            resp.headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        resp.content_length = length
        if request.method == "HEAD":
            return resp  # aiohttp sends the headers (Content-Length included) and no body
        await resp.prepare(request)

        key = (repo_id, path)
        with self._lock:  # a knob counts one GET that actually streams a body
            drop = None
            if key in self._drops:
                nbytes, left = self._drops[key]
                drop = nbytes
                if left <= 1:
                    del self._drops[key]
                else:
                    self._drops[key] = (nbytes, left - 1)
            flip = self._corrupts.get(key, 0) > 0
            if flip:
                self._corrupts[key] -= 1
                if not self._corrupts[key]:
                    del self._corrupts[key]
        with contextlib.suppress(ConnectionError):  # the client went away (or we cut it off): nothing more to send
            await self._stream(request, resp, f, start, length, key, drop, flip)
        return resp

    async def _stream(self, request: web.Request, resp: web.StreamResponse, f: _File, start: int, length: int,
                      key: tuple[str, str], drop: int | None, flip: bool) -> None:
        limit = length if drop is None else min(drop, length)
        fh = open(f.source, "rb") if f.source is not None else None  # noqa: SIM115 - closed below
        try:
            if fh is not None:
                fh.seek(start)
            sent = 0
            paced_since, paced_bytes, paced_bps = time.monotonic(), 0, None
            while sent < limit and not self._closing:
                with self._lock:
                    bps = self._bps
                size = min(CHUNK, limit - sent)
                if bps:
                    size = min(size, max(1024, bps // 20))  # ~20 writes a second keeps the pace smooth
                if fh is not None:
                    chunk = fh.read(size)
                    if not chunk:
                        break  # the file shrank under us
                else:
                    assert f.data is not None
                    chunk = f.data[start + sent:start + sent + size]
                if flip and sent == 0:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                # Counted before the write: once written, the client may read the end of the body and the
                # test check the count before this thread runs again.
                self._count(key, len(chunk))
                await resp.write(chunk)
                sent += len(chunk)
                if bps:
                    if bps != paced_bps:  # rate changed: pace from here
                        paced_since, paced_bytes, paced_bps = time.monotonic(), 0, bps
                    paced_bytes += len(chunk)
                    delay = paced_since + paced_bytes / bps - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    paced_bps = None
        finally:
            if fh is not None:
                fh.close()
        if sent < length:
            await cut_off(request, "fakehub")
