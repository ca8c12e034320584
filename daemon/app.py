"""The aiohttp application: routes, error handling, and the services they share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from .api import (anthropic, blobs, console, events, inference, ollama, openai, ops, remotes, rerank, responses,
                  usage)
from .api.context import (CLOSING, CORE, FILE_JOBS, METRICS, PULLS, REMOTE_RECORDS, REQUEST_LOG, SCHEDULER, SETTINGS,
                          STORE, STORED_RESPONSES, TASKS)
from .api.fields import MAX_BODY_BYTES
from .api.guard import add_cors_headers, guard_middleware
from .api.http import access_middleware, errors_middleware, start_owned_task
from .config import Settings
from .file_jobs import FileJobs
from .generation import Core
from .intake.pull.manager import PullManager
from .kernel_crashes import KernelCrashes
from .kernels import ExtraBuffers, Machine
from .metrics import Metrics
from .request_log import RequestLog, RequestRecords
from .remote.engines import Remotes
from .remote.records import RemoteRecords
from .scheduler.model_spec import StartRunner
from .scheduler.scheduler import Scheduler
from .store import Store
from .stored_responses import StoredResponses


async def _file_jobs(app: web.Application) -> AsyncIterator[None]:
    """First in, last out: every job it runs (pulls', owned tasks') has stopped before it closes."""
    app[FILE_JOBS] = FileJobs()
    yield
    await app[FILE_JOBS].close()


async def _owned_tasks(app: web.Application) -> AsyncIterator[None]:
    app[TASKS] = set()
    yield
    running = app[TASKS]
    tasks = list(running)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _pulls(app: web.Application) -> AsyncIterator[None]:
    app[PULLS] = PullManager(app[STORE], app[SETTINGS], lambda coro: start_owned_task(app, coro), app[METRICS],
                             app[FILE_JOBS])
    yield
    await app[PULLS].close()


async def _request_log(app: web.Application) -> AsyncIterator[None]:
    """The request log's writer runs as long as the app; stopping, it writes what is queued."""
    writer = asyncio.ensure_future(app[REQUEST_LOG].run())
    yield
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)


async def _closing(app: web.Application) -> None:
    """Streams that would never end by themselves (`r1 log --follow`, the console's events) end when the
    daemon shuts down, rather than hold it for the whole grace."""
    app[CLOSING].set()
    app[REQUEST_LOG].close_followers()


def _scheduler(start: StartRunner | None, crashes: KernelCrashes):
    async def run_scheduler(app: web.Application) -> AsyncIterator[None]:
        extra_buffers = ExtraBuffers(app[SETTINGS].llama_extra_buffers, Machine.here(), crashes,
                                     app[SETTINGS].kv_cache_type)
        app[SCHEDULER] = Scheduler(app[SETTINGS], extra_buffers, start)
        remotes = Remotes(app[REMOTE_RECORDS], app[SETTINGS])
        app[CORE] = Core(app[STORE], app[SCHEDULER], app[METRICS], remotes)
        yield
        await remotes.close()
        await app[SCHEDULER].close()  # no runner outlives the daemon

    return run_scheduler


def create_app(settings: Settings, store: Store, *, start: StartRunner | None = None,
               metrics: Metrics | None = None) -> web.Application:
    """An app over an opened store; the caller owns the store's lifetime. Tests hand in a fake
    runner factory (`start`; by default real runner processes) and their own metrics to read."""
    app = web.Application(middlewares=[access_middleware, guard_middleware, errors_middleware],
                          client_max_size=MAX_BODY_BYTES)  # images come inline, base64
    app.on_response_prepare.append(add_cors_headers)
    app[SETTINGS] = settings
    app[STORE] = store
    app[METRICS] = Metrics() if metrics is None else metrics
    # The features that keep tables in r1.db beside the store's, on the store's database.
    app[REMOTE_RECORDS] = RemoteRecords(store.database)
    app[STORED_RESPONSES] = StoredResponses(store.database)
    app[REQUEST_LOG] = RequestLog(RequestRecords(store.database), app[METRICS], enabled=settings.log_requests,
                                  retention=settings.log_retention)
    app[CLOSING] = asyncio.Event()
    app.on_shutdown.append(_closing)
    # Cleanup runs in reverse: owned tasks (pull transfers) stop before the pulls' HTTP session closes,
    # the request log writes last (the requests that ended during the shutdown too), and the file-jobs
    # pool, first in, closes once nothing can hand it a job.
    app.cleanup_ctx.append(_file_jobs)
    app.cleanup_ctx.append(_request_log)
    app.cleanup_ctx.append(_scheduler(start, KernelCrashes(store.database)))
    app.cleanup_ctx.append(_pulls)
    app.cleanup_ctx.append(_owned_tasks)
    for dialect_or_feature in (ollama, inference, rerank, openai, anthropic, responses, ops, blobs, remotes, usage,
                               events, console):
        app.add_routes(dialect_or_feature.routes)
    return app
