"""The request log's writer: finished requests queue in memory and are written in batches, off the request path.

A request only appends its entry to a list (no await, no database); a background task writes
what accumulated every FLUSH_INTERVAL seconds, or as soon as BATCH_SIZE entries wait, in one
transaction through r1.db's writer thread (records.py). So a kill -9 loses at most the entries not yet
written, and a database that cannot be written (disk full, read-only file) costs dropped
entries, counted in /metrics, never a failed or slower request. Followers (`r1 log --follow`)
get each entry once it is written, with its id.

What a row keeps of text: the prompt and the answer only with R1_LOG_PROMPTS=1, and an error's message
only then too (messages quote what the client sent: a bad field's value, a template's complaint about a
message, an upstream's echo), else its status; a remote's secrets never (`redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

from ..metrics import Metrics
from ..redact import redact
from .records import RequestRecords

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5  # seconds an entry may wait before it is written
BATCH_SIZE = 100  # entries that start a write at once
MAX_PENDING = 10_000  # beyond this (a writer stuck behind a long import), entries are dropped
PRUNE_INTERVAL = 3600.0
FOLLOWER_BACKLOG = 1000  # a follower that reads slower than this many entries loses the oldest

Entry = dict[str, Any]
TEXT_COLUMNS = ("error_text", "prompt", "answer")


def error_text(status: int, error: str | None, keep_text: bool) -> str | None:
    """What a row keeps of a request's error: the message when it keeps text, else the status only."""
    if error is None or keep_text:
        return error
    if status < 400:  # in band, after the answer had started
        return "error after the answer began"
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:  # 499: the client went away
        return str(status)


class RequestLog:
    def __init__(self, records: RequestRecords, metrics: Metrics, *, enabled: bool = True,
                 retention: float = 30 * 86400, clock: Callable[[], float] = time.time) -> None:
        self.enabled = enabled
        self.records = records  # what /api/usage and /api/log read
        self._metrics = metrics
        self._retention = retention
        self._clock = clock
        self._pending: list[Entry] = []
        self._wake = asyncio.Event()
        self._followers: set[asyncio.Queue[Entry | None]] = set()
        self._failing = False  # to warn once per spell of failures, not once per batch

    def add(self, entry: Entry) -> None:
        """Queue a finished request's entry; never waits."""
        if not self.enabled:
            return
        if len(self._pending) >= MAX_PENDING:
            self._metrics.requests_dropped.inc()
            return
        for column in TEXT_COLUMNS:
            if entry.get(column):
                entry[column] = redact(entry[column])
        self._pending.append(entry)
        if len(self._pending) >= BATCH_SIZE:
            self._wake.set()

    async def run(self) -> None:
        """Write batches until cancelled; prune at start and hourly. Cancelled, it writes what waits."""
        next_prune = 0.0
        try:
            while True:
                if time.monotonic() >= next_prune:
                    await self.prune()
                    next_prune = time.monotonic() + PRUNE_INTERVAL
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL)
                await self.flush()
        finally:
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        """Write the queued entries in one transaction, or drop and count them if the database refuses."""
        self._wake.clear()
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            ids = await asyncio.to_thread(self.records.insert, batch)
        except (sqlite3.Error, OSError) as exc:
            self._metrics.requests_dropped.inc(len(batch))
            if not self._failing:
                log.warning("the request log cannot write to r1.db (%s): entries are dropped and "
                            "counted in r1_request_log_dropped_total until it can; check free space and the file's "
                            "permissions", exc)
            self._failing = True
            return
        if self._failing:
            log.info("the request log writes again")
        self._failing = False
        self._metrics.requests_logged.inc(len(batch))
        for row_id, entry in zip(ids, batch):
            self._tell({"id": row_id, **entry})

    async def prune(self) -> int:
        """Forget the entries older than R1_LOG_RETENTION (a negative or zero retention keeps them all)."""
        if self._retention <= 0:
            return 0
        try:
            return await asyncio.to_thread(self.records.prune, self._clock() - self._retention)
        except (sqlite3.Error, OSError) as exc:
            log.warning("could not prune the request log: %s", exc)
            return 0

    def _tell(self, row: Entry | None) -> None:
        for follower in self._followers:
            if follower.full():  # a slow reader loses its oldest entry, not the daemon its memory
                follower.get_nowait()
            follower.put_nowait(row)

    @contextlib.contextmanager
    def follow(self) -> Iterator[asyncio.Queue[Entry | None]]:
        """A queue of the entries written from now on; None in it means the daemon is stopping."""
        follower: asyncio.Queue[Entry | None] = asyncio.Queue(FOLLOWER_BACKLOG)
        self._followers.add(follower)
        try:
            yield follower
        finally:
            self._followers.discard(follower)

    def close_followers(self) -> None:
        """End every follower's stream (on shutdown: an endless stream would hold the daemon up)."""
        self._tell(None)
