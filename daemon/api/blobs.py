"""Ollama's blob upload (`HEAD`/`POST /api/blobs/sha256:<digest>`), which `ollama create` uses to
send model files before naming them in /api/create's `files`."""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import web

from ..errors import BadRequest
from ..store import parse_digest
from ..store.blobs import IMPORT_PREFIX, disk_full_is
from .context import STORE

routes = web.RouteTableDef()

CHUNK = 1024 * 1024


def _digest(request: web.Request) -> str:
    return parse_digest(request.match_info["digest"].replace("sha256-", "sha256:", 1))


@routes.route("HEAD", "/api/blobs/{digest}")
async def has_blob(request: web.Request) -> web.Response:
    return web.Response(status=200 if request.app[STORE].blobs.has(_digest(request)) else 404)


@routes.post("/api/blobs/{digest}")
async def upload_blob(request: web.Request) -> web.Response:
    """Hash the body as it arrives; it becomes a blob only if it has the digest the URL names."""
    digest = _digest(request)
    blobs = request.app[STORE].blobs
    if blobs.has(digest):
        return web.Response(status=200)
    if request.content_length:
        blobs.check_space(request.content_length, f"the upload of {digest}")
    tmp = blobs.new_partial(IMPORT_PREFIX)
    hasher = hashlib.sha256()
    try:
        with disk_full_is(f"the disk filled up while receiving {digest}"), tmp.open("wb") as out:
            async for chunk in request.content.iter_chunked(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            raise BadRequest(f"the uploaded bytes have digest {actual}, not {digest}; nothing was stored")
        await asyncio.to_thread(blobs.commit, tmp, digest)
    finally:
        tmp.unlink(missing_ok=True)  # gone after commit renamed it; removed here after any failure
    return web.Response(status=201)
