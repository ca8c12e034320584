"""Typed keys for the services an app holds, gathered in one place."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..config import Settings
from ..generation import Core
from ..metrics import Metrics
from ..pull.manager import PullManager
from ..scheduler import Scheduler
from ..store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
# Work that must outlive the request that started it (an import, later a pull);
# cancelled and awaited when the app shuts down.
TASKS = web.AppKey("tasks", set[asyncio.Task])
PULLS = web.AppKey("pulls", PullManager)
SCHEDULER = web.AppKey("scheduler", Scheduler)
METRICS = web.AppKey("metrics", Metrics)
CORE = web.AppKey("core", Core)  # store, scheduler and metrics together, for the generation routes
