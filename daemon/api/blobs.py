"""Ollama's blob upload (`HEAD`/`POST /api/blobs/sha256:<digest>`), which `ollama create` uses to
send model files before naming them in /api/create's `files`."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..store import parse_digest
from ..store.blobs import Upload
from .context import FILE_JOBS, STORE

routes = web.RouteTableDef()

CHUNK = 1024 * 1024  # bytes handed to the hashing thread at a time


def _digest(request: web.Request) -> str:
    return parse_digest(request.match_info["digest"].replace("sha256-", "sha256:", 1))


@routes.route("HEAD", "/api/blobs/{digest}")
async def has_blob(request: web.Request) -> web.Response:
    return web.Response(status=200 if request.app[STORE].blobs.has(_digest(request)) else 404)


@routes.post("/api/blobs/{digest}")
async def upload_blob(request: web.Request) -> web.Response:
    """Hash the body as it arrives; it becomes a blob only if it has the digest the URL names.
    The event loop only receives: hashing and writing run on the file-jobs pool, a megabyte at a time."""
    digest = _digest(request)
    blobs = request.app[STORE].blobs
    if await asyncio.to_thread(blobs.has, digest):
        return web.Response(status=200)
    run = request.app[FILE_JOBS].run
    upload = await run(Upload, blobs, digest, request.content_length)
    try:
        received = bytearray()
        async for chunk in request.content.iter_chunked(CHUNK):
            received += chunk
            if len(received) >= CHUNK:
                data, received = received, bytearray()
                await run(upload.write, data)
        await run(upload.write, received)
        await run(upload.commit)
    finally:
        await run(upload.discard)
    return web.Response(status=201)
