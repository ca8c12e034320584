"""Typed keys for the services an app holds, gathered in one place."""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from ..config import Settings
from ..file_jobs import FileJobs
from ..generation import Core
from ..intake.pull.manager import PullManager
from ..metrics import Metrics
from ..remote.records import RemoteRecords
from ..request_log import RequestLog
from ..scheduler.scheduler import Scheduler
from ..store import Store
from ..stored_responses import StoredResponses

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
REMOTE_RECORDS = web.AppKey("remote_records", RemoteRecords)  # remote engines and prices
STORED_RESPONSES = web.AppKey("stored_responses", StoredResponses)  # Responses kept for previous_response_id
# Work that must outlive the request that started it (an import, later a pull);
# cancelled and awaited when the app shuts down.
TASKS = web.AppKey("tasks", set[asyncio.Task])
PULLS = web.AppKey("pulls", PullManager)
SCHEDULER = web.AppKey("scheduler", Scheduler)
METRICS = web.AppKey("metrics", Metrics)
REQUEST_LOG = web.AppKey("request_log", RequestLog)
# Long file jobs (imports, uploads, create, a pull's hashing) run here, so look-ups on asyncio's
# default pool never wait behind them.
FILE_JOBS = web.AppKey("file_jobs", FileJobs)
CORE = web.AppKey("core", Core)  # store, scheduler and metrics together, for the generation routes
# Set when the daemon begins to shut down: streams that never end by themselves (/api/events) end then,
# so an open console does not hold the shutdown for R1_SHUTDOWN_GRACE.
CLOSING = web.AppKey("closing", asyncio.Event)


class Listener(Protocol):
    """The daemon's TCP listener (server.py): on from the start with R1_HOST, or opened later (`r1 launch`)."""

    address: tuple[str, int] | None

    async def open(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port (port 0: any free one) unless already listening; the address it listens on."""


LISTENER = web.AppKey("listener", Listener)
