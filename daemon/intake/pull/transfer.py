"""One remote file into the store: parallel byte ranges, resumable, hashed as it arrives, verified.

The file is cut into chunks; up to `connections` of them download at once, each written
in place with pwrite. A small state file beside the partial file records how many bytes
of each chunk are on disk, so a dropped connection or a daemon stopped or killed mid-pull
resumes where it stopped (at most the last 0.2 s of bytes is fetched twice); a pull cancelled
on purpose deletes both files (pull/manager.py). The sha256 follows the contiguous prefix
of the file as it fills, so verifying at the end costs little; the blob enters blobs/ only
if the digest matches.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from ...errors import NotFound, R1Error
from ...store.blobs import DOWNLOAD_PREFIX, BlobStore, disk_full_is

RunJob = Callable[..., Awaitable[Any]]  # runs blocking file work off the event loop (FileJobs.run)

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_CHUNK, MAX_CHUNK = 1 * MIB, 64 * MIB
READ_SIZE = 1 * MIB
SAVE_INTERVAL = 0.2  # seconds between state file writes: what a killed daemon may fetch twice
ATTEMPTS = 5  # per chunk, for dropped connections and server errors
SMALL_FILE_LIMIT = 256 * MIB  # git files on the Hub are small; a larger answer is not the file asked for


class DigestMismatchError(R1Error):
    status = 502


class TransferError(R1Error):
    status = 502


def refusal(url: str, status: int) -> R1Error | None:
    """A 4xx that asking again cannot change, as the error to give up with; None for what may pass (a 5xx,
    408 Request Timeout, 429 Too Many Requests) or for no error at all."""
    if status in (401, 403):
        return TransferError(f"{url} was refused ({status}); for a Hub repo, check HF_TOKEN")
    if status == 404:
        return NotFound(f"no file at {url}")
    if 400 <= status < 500 and status not in (408, 429):
        return TransferError(f"{url} answered {status}: the server will not give it")
    return None


def chunk_size(size: int, connections: int) -> int:
    """About four chunks per connection, so a slow one never holds the rest back for long."""
    return max(MIN_CHUNK, min(MAX_CHUNK, size // (connections * 4) or 1))


class RangedDownload:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        headers: dict[str, str],
        size: int,
        expected: str | None,
        blobs: BlobStore,
        connections: int,
        file_job: RunJob = asyncio.to_thread,
    ) -> None:
        self.session, self.url, self.headers = session, url, headers
        self.file_job = file_job  # runs the hashing and the commit: on the daemon's file-jobs pool
        self.size, self.expected, self.blobs = size, expected, blobs
        self.connections = connections
        key = expected.replace(":", "-") if expected else f"{DOWNLOAD_PREFIX}{uuid.uuid4().hex}"
        self.path = blobs.partial / f"{key}.part"
        self.state_path = blobs.partial / f"{key}.json"
        self.chunk = chunk_size(size, connections)
        self.ranges = [(start, min(start + self.chunk, size)) for start in range(0, size, self.chunk)]
        self.done = self._load_state()
        self.completed = sum(self.done)  # bytes on disk, for progress
        self.fetched = 0  # bytes downloaded by this process
        self._changed = asyncio.Event()
        self._first_incomplete = 0
        self._saved_at = 0.0

    def _load_state(self) -> list[int]:
        fresh = [0] * len(self.ranges)
        if not self.expected:
            return fresh
        try:
            state = json.loads(self.state_path.read_text())
            if (state["size"], state["chunk"], len(state["done"])) == (self.size, self.chunk, len(fresh)) and \
                    self.path.stat().st_size == self.size:
                return [min(int(d), end - start) for d, (start, end) in zip(state["done"], self.ranges)]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no usable state: start over
        return fresh

    def _save_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.expected or (not force and now - self._saved_at < SAVE_INTERVAL):
            return
        self._saved_at = now
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"size": self.size, "chunk": self.chunk, "done": self.done}))
        os.replace(tmp, self.state_path)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)

    async def run(self) -> str:
        """Download what is missing, verify, and commit the blob; the digest."""
        self.blobs.check_space(self.size - self.completed, self.url.rsplit("/", 1)[-1])
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != self.size:
                os.ftruncate(fd, self.size)
            pending = deque(i for i, (start, end) in enumerate(self.ranges) if self.done[i] < end - start)
            hasher = asyncio.create_task(self._hash(fd))
            workers = [asyncio.create_task(self._worker(fd, pending)) for _ in range(min(self.connections, len(pending)))]
            try:
                await asyncio.gather(*workers)
                digest = await hasher
            except BaseException:
                for task in (*workers, hasher):
                    task.cancel()
                await asyncio.gather(*workers, hasher, return_exceptions=True)
                raise
            finally:
                self._save_state(force=True)
        finally:
            os.close(fd)
        if self.expected and digest != self.expected:
            self.discard()
            raise DigestMismatchError(f"expected {self.expected}, got {digest}")
        await self.file_job(self.blobs.commit, self.path, digest)
        self.state_path.unlink(missing_ok=True)
        return digest

    async def _worker(self, fd: int, pending: deque[int]) -> None:
        while pending:
            await self._fetch_chunk(fd, pending.popleft())

    async def _fetch_chunk(self, fd: int, index: int) -> None:
        start, end = self.ranges[index]
        last_error: Exception | None = None
        for attempt in range(ATTEMPTS):
            offset = start + self.done[index]
            if offset >= end:
                return
            try:
                await self._stream_range(fd, index, offset, end)
                return
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
                last_error = exc
                log.info("range %d-%d of %s: %s; retrying", offset, end - 1, self.url, exc or type(exc).__name__)
                await asyncio.sleep(min(0.25 * 2**attempt, 4.0))
        raise TransferError(f"gave up downloading {self.url} after {ATTEMPTS} attempts: {last_error}")

    async def _stream_range(self, fd: int, index: int, offset: int, end: int) -> None:
        headers = {**self.headers, "Range": f"bytes={offset}-{end - 1}"}
        async with self.session.get(self.url, headers=headers) as response:
            whole = response.status == 200 and offset == 0 and end == self.size
            if refused := refusal(self.url, response.status):
                raise refused
            if response.status != 206 and not whole:
                raise aiohttp.ClientResponseError(response.request_info, (), status=response.status,
                                                  message=f"expected 206 Partial Content, got {response.status}")
            async for data in response.content.iter_chunked(READ_SIZE):
                data = data[: end - offset]  # never past this range, whatever the server sends
                with disk_full_is(f"no space left on the device holding {self.blobs.dir.parent}; the partial "
                                  "download is kept: free some space and pull again to resume"):
                    os.pwrite(fd, data, offset)
                offset += len(data)
                self.done[index] += len(data)
                self.completed += len(data)
                self.fetched += len(data)
                self._changed.set()
                self._save_state()
                if offset >= end:
                    break
        if offset < end:
            raise ConnectionError(f"connection closed {end - offset} bytes early")

    def _contiguous(self) -> int:
        """Bytes from the start of the file that are all on disk."""
        while self._first_incomplete < len(self.ranges):
            start, end = self.ranges[self._first_incomplete]
            if self.done[self._first_incomplete] < end - start:
                return start + self.done[self._first_incomplete]
            self._first_incomplete += 1
        return self.size

    async def _hash(self, fd: int) -> str:
        sha = hashlib.sha256()
        hashed = 0
        while hashed < self.size:
            self._changed.clear()  # before looking, so a write after the look still wakes us
            ready = self._contiguous()
            if ready > hashed:
                await self.file_job(_hash_range, sha, fd, hashed, ready)
                hashed = ready
            else:
                await self._changed.wait()
        return "sha256:" + sha.hexdigest()


def _hash_range(sha: hashlib._Hash, fd: int, start: int, end: int) -> None:
    while start < end:
        data = os.pread(fd, min(4 * MIB, end - start), start)
        if not data:
            raise TransferError("the partial file is shorter than expected")
        sha.update(data)
        start += len(data)


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """A response's body, refused when it is larger than `limit`: a small file is not worth more."""
    data = bytearray()
    async for piece in response.content.iter_chunked(READ_SIZE):
        data += piece
        if len(data) > limit:
            raise TransferError(f"{response.url} is larger than the {limit:,} bytes r1 expects of it")
    return bytes(data)


async def get_bytes(session: aiohttp.ClientSession, url: str, headers: dict[str, str], limit: int) -> bytes:
    """A small file in one GET (redirects followed), retried like a range; at most `limit` bytes."""
    last_error: Exception | None = None
    for attempt in range(ATTEMPTS):
        try:
            async with session.get(url, headers=headers) as response:
                if refused := refusal(url, response.status):
                    raise refused  # not retried: a 4xx says the same the next time
                response.raise_for_status()
                return await read_limited(response, limit)
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            last_error = exc
            await asyncio.sleep(min(0.25 * 2**attempt, 4.0))
    raise TransferError(f"gave up downloading {url} after {ATTEMPTS} attempts: {last_error}")


async def fetch_small(session: aiohttp.ClientSession, url: str, headers: dict[str, str], blobs: BlobStore) -> tuple[str, int]:
    """A small file whose digest the Hub does not give (config, tokenizer): one GET, hashed, committed."""
    data = await get_bytes(session, url, headers, SMALL_FILE_LIMIT)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if not blobs.has(digest, len(data)):
        tmp = blobs.new_partial(DOWNLOAD_PREFIX)
        tmp.write_bytes(data)
        await asyncio.to_thread(blobs.commit, tmp, digest)
    return digest, len(data)
