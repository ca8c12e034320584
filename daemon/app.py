"""The aiohttp application: routes, error handling, and the services they share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from .api import blobs, inference, ollama, openai, ops
from .api.guard import add_cors_headers, guard_middleware
from .api.context import PULLS, SCHEDULER, SETTINGS, STORE, TASKS
from .api.http import access_middleware, errors_middleware, start_owned_task
from .config import Settings
from .kernels import ExtraBuffers, Machine
from .pull.manager import PullManager
from .scheduler import Scheduler
from .store import Store


async def _owned_tasks(app: web.Application) -> AsyncIterator[None]:
    app[TASKS] = set()
    yield
    tasks = list(app[TASKS])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _pulls(app: web.Application) -> AsyncIterator[None]:
    app[PULLS] = PullManager(app[STORE], app[SETTINGS], lambda coro: start_owned_task(app, coro))
    yield
    await app[PULLS].close()


async def _scheduler(app: web.Application) -> AsyncIterator[None]:
    extra_buffers = ExtraBuffers(app[SETTINGS].llama_extra_buffers, Machine.here(), app[STORE])
    app[SCHEDULER] = Scheduler(app[SETTINGS], extra_buffers)
    yield
    await app[SCHEDULER].close()  # no runner outlives the daemon


def create_app(settings: Settings, store: Store) -> web.Application:
    """An app over an opened store; the caller owns the store's lifetime."""
    app = web.Application(middlewares=[access_middleware, guard_middleware, errors_middleware])
    app.on_response_prepare.append(add_cors_headers)
    app[SETTINGS] = settings
    app[STORE] = store
    # Cleanup runs in reverse: owned tasks (pull transfers) stop before the pulls' HTTP session closes.
    app.cleanup_ctx.append(_scheduler)
    app.cleanup_ctx.append(_pulls)
    app.cleanup_ctx.append(_owned_tasks)
    app.add_routes(ollama.routes)
    app.add_routes(inference.routes)
    app.add_routes(openai.routes)
    app.add_routes(ops.routes)
    app.add_routes(blobs.routes)
    return app
