"""A thread pool of its own for long file jobs: imports hashing gigabytes, blob uploads, `create`, a
pull's hashing and commits.

asyncio's default pool (asyncio.to_thread) is left to quick work: store look-ups, small writes. When
both shared one pool, eight folder imports took every thread and `GET /api/tags` waited 23 s for one.
A job must not submit another job to this pool and wait for it: with every thread busy, it would
wait for itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class FileJobs:
    """Runs blocking file work off the event loop, on threads the look-ups never queue behind."""

    def __init__(self) -> None:
        # As many threads as asyncio's default pool (ThreadPoolExecutor's default); jobs beyond them wait here.
        self._pool = ThreadPoolExecutor(thread_name_prefix="r1-file-job")

    async def run(self, job: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`job(*args, **kwargs)` on a file-jobs thread, in the caller's context (the request's facts), as
        asyncio.to_thread runs it on the default pool."""
        call = functools.partial(contextvars.copy_context().run, job, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def close(self) -> None:
        """Wait for the jobs under way (off the event loop); those not started are dropped: their
        callers are gone by now."""
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
