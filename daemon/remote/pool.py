"""The URLs of one remote: a request goes to the healthy URL with the fewest requests in flight; a URL
that failed is left out until its health check answers again, checked in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

from ..redact import masked_url

log = logging.getLogger(__name__)
RECHECK_SECONDS = 1.0


class UrlPool:
    def __init__(self, urls: tuple[str, ...], healthy: Callable[[str], Awaitable[bool]]) -> None:
        self.urls = urls
        self._healthy = healthy
        self._in_flight = dict.fromkeys(urls, 0)
        self._turn = 0
        self._down: dict[str, asyncio.Task[None]] = {}  # failed URLs, each with the task that rechecks it

    def order(self) -> list[str]:
        """Healthy URLs, least busy first (ties in turn, so one after another they share the load), then the
        failed ones (tried last rather than never)."""
        turn, self._turn = self._turn, self._turn + 1
        count = len(self.urls)
        up = sorted((i for i, u in enumerate(self.urls) if u not in self._down),
                    key=lambda i: (self._in_flight[self.urls[i]], (i - turn) % count))
        return [self.urls[i] for i in up] + [u for u in self.urls if u in self._down]

    @contextlib.contextmanager
    def using(self, url: str) -> Iterator[None]:
        self._in_flight[url] += 1
        try:
            yield
        finally:
            self._in_flight[url] -= 1

    def failed(self, url: str, why: str) -> None:
        if url not in self._down:
            log.warning("remote URL %s failed (%s); requests go to the others until it answers again",
                        masked_url(url), why)
            self._down[url] = asyncio.ensure_future(self._recheck(url))

    def answered(self, url: str) -> None:
        task = self._down.pop(url, None)
        if task is not None:
            task.cancel()

    async def _recheck(self, url: str) -> None:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            if await self._healthy(url):
                log.info("remote URL %s answers again", masked_url(url))
                self._down.pop(url, None)
                return

    def close(self) -> None:
        for task in self._down.values():
            task.cancel()
        self._down.clear()
