"""A fake Ollama registry on 127.0.0.1, answering what `ollama pull` (and r1) asks of the real one.

  GET /v2/{namespace}/{model}/manifests/{tag}   the manifest (Docker's v2 schema), 404 when unknown
  GET /v2/{namespace}/{model}/blobs/sha256:...  307 to /cdn/sha256/... as the real one redirects to its CDN
  GET /cdn/sha256/...                           the blob, with byte ranges

Knobs act on /cdn bodies: `drop_after` ends the connection part-way, `corrupt` flips the first byte
(right length, wrong sha256). Contents are held in memory: give it small files.

    with FakeOllama() as registry:
        registry.add_model("library/tiny", "latest", [(MODEL, gguf_path), (SYSTEM, b"Be brief.")])
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from aiohttp import web

from .loopback import LoopbackServer, Unsatisfiable, cut_off, parse_range

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
MEDIA = "application/vnd.ollama.image."
MODEL, TEMPLATE, SYSTEM, PARAMS, LICENSE, MESSAGES, PROJECTOR, ADAPTER = (
    MEDIA + kind for kind in ("model", "template", "system", "params", "license", "messages", "projector", "adapter")
)
CHUNK = 64 * 1024


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _errors(status: int, code: str, message: str) -> web.Response:
    # The registry's error shape (the OCI distribution spec's).
    return web.json_response({"errors": [{"code": code, "message": message}]}, status=status)


class FakeOllama(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self._manifests: dict[tuple[str, str], bytes] = {}  # (namespace/model, tag) -> the manifest as served
        self._listed: dict[str, set[str]] = {}  # namespace/model -> digests its manifests name
        self._blobs: dict[str, bytes] = {}
        self._drops: dict[str, tuple[int, int]] = {}  # digest -> (bytes sent before the cut, times left)
        self._corrupts: dict[str, int] = {}  # digest -> times left

    def env(self) -> dict[str, str]:
        """Environment for an r1 daemon that should pull from this registry."""
        return {"R1_OLLAMA_REGISTRY": self.url, "R1_NO_OLLAMA_REGISTRY": ""}

    # -- content --

    def add_model(self, repo: str, tag: str, layers: list[tuple[str, bytes | Path]]) -> str:
        """Publish (or replace) repo:tag, `repo` being namespace/model, with these (media type, content)
        layers and a config blob as Ollama writes one; the manifest's digest."""
        entries = []
        with self._lock:
            for media_type, content in layers:
                data = content.read_bytes() if isinstance(content, Path) else content
                self._blobs[_digest(data)] = data
                entries.append({"mediaType": media_type, "digest": _digest(data), "size": len(data)})
            config = json.dumps({"model_format": "gguf", "model_family": "llama", "file_type": "F32",
                                 "rootfs": {"type": "layers", "diff_ids": [e["digest"] for e in entries]}}).encode()
            self._blobs[_digest(config)] = config
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": CONFIG_TYPE, "digest": _digest(config), "size": len(config)},
                "layers": entries,
            }).encode()
            self._manifests[(repo, tag)] = manifest
            self._listed.setdefault(repo, set()).update([_digest(config), *(e["digest"] for e in entries)])
        return _digest(manifest)

    # -- knobs --

    def drop_after(self, digest: str, nbytes: int, times: int = 1) -> None:
        with self._lock:
            self._drops[digest] = (nbytes, times)

    def corrupt(self, digest: str, times: int = 1) -> None:
        with self._lock:
            self._corrupts[digest] = times

    def served_bytes(self, digest: str) -> int:
        """Body bytes of the blob sent from /cdn."""
        return self._served_bytes(digest)

    # -- requests (event loop thread) --

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._log(request.method, request.path, request.headers.get("Range"), request.headers.get("Accept"))
        parts = request.path.strip("/").split("/")
        if request.method != "GET":
            return _errors(405, "UNSUPPORTED", "this fake answers GET only")
        if len(parts) == 5 and parts[0] == "v2" and parts[3] == "manifests":
            return self._manifest(f"{parts[1]}/{parts[2]}", parts[4])
        if len(parts) == 5 and parts[0] == "v2" and parts[3] == "blobs":
            return self._redirect(f"{parts[1]}/{parts[2]}", parts[4])
        if len(parts) == 3 and parts[0] == "cdn":
            return await self._blob(request, f"{parts[1]}:{parts[2]}")
        return _errors(404, "NAME_UNKNOWN", f"no route {request.path}")

    def _manifest(self, repo: str, tag: str) -> web.Response:
        with self._lock:
            manifest = self._manifests.get((repo, tag))
        if manifest is None:
            return _errors(404, "MANIFEST_UNKNOWN", f"manifest unknown: {repo}:{tag}")
        return web.Response(body=manifest, content_type=MANIFEST_TYPE, headers={"Docker-Content-Digest": _digest(manifest)})

    def _redirect(self, repo: str, digest: str) -> web.Response:
        with self._lock:
            listed = digest in self._listed.get(repo, set())
        if not listed:
            return _errors(404, "BLOB_UNKNOWN", f"blob unknown to {repo}: {digest}")
        algorithm, _, hexdigest = digest.partition(":")
        raise web.HTTPTemporaryRedirect(f"{self.url}/cdn/{algorithm}/{hexdigest}?expires=soon&signature=fake")

    async def _blob(self, request: web.Request, digest: str) -> web.StreamResponse:
        with self._lock:
            data = self._blobs.get(digest)
        if data is None:
            return web.Response(status=404, text="NoSuchKey")
        try:
            rng = parse_range(request.headers.get("Range"), len(data))
        except Unsatisfiable:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        start, end = rng if rng is not None else (0, len(data) - 1)
        response = web.StreamResponse(status=200 if rng is None else 206, headers={"Accept-Ranges": "bytes"})
        if rng is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        response.content_length = end - start + 1
        await response.prepare(request)
        body = bytearray(data[start:end + 1])
        with self._lock:  # a knob counts one GET that sends a body
            drop, left = self._drops.get(digest, (None, 0))
            if left:
                self._drops[digest] = (drop, left - 1)
            else:
                drop = None
            if self._corrupts.get(digest, 0) > 0:
                self._corrupts[digest] -= 1
                body[0] ^= 0xFF
        limit = len(body) if drop is None else min(drop, len(body))
        sent = 0
        try:
            while sent < limit and not self._closing:
                piece = bytes(body[sent:min(sent + CHUNK, limit)])
                self._count(digest, len(piece))  # before the write, as in fakehub: the client may be done first
                await response.write(piece)
                sent += len(piece)
            if sent < len(body):
                await cut_off(request, "fakeollama")
        except ConnectionError:
            pass  # the client went away (or we cut it off)
        return response
