"""Pulls in flight: one per model, shared by every client asking for it, outliving them all.

A pull finds where the model comes from (locate.py: the Hub or Ollama's registry; for a
stored model, whether its source has anything newer), fetches each file it lacks (one
transfer per blob, shared with any other pull that needs the same bytes), records the
model, and tells its followers how it goes in Ollama's progress shapes.

A pull can be cancelled (DELETE /api/pull): its task stops, each transfer no other pull shares
stops too and its partial file goes, and its followers get a last error event. Once it is
writing the model's manifest it is too late: the model is as good as stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import aiohttp

from ...config import Settings, tool_roots
from ...errors import Conflict, NotFound, R1Error
from ...file_jobs import FileJobs
from ...metrics import Metrics
from ...store import CorruptSourceError, FileEntry, Manifest, ModelName, ModelNotFoundError, ModelRecord, Store
from ...store.names import parse_name
from ..files import Event, stored_facts
from ..quant import RemoteFile
from ..tools.held import find_held
from .locate import Kept, locate, refresh
from .plan import PullPlan
from .transfer import DigestMismatchError, RangedDownload, fetch_small

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.25  # seconds between progress events of one file
# How long a cancel `unless_followed` waits before it counts followers: the caller's own stream, closed just
# before it asked, takes an iteration or two of the event loop to end.
FOLLOWER_GONE = 0.05
# Owned tasks run detached from any request (app.py cancels them at shutdown).
Spawn = Callable[[Awaitable[Any]], asyncio.Task]


class PullCancelledError(R1Error):
    status = 499  # as a request whose client went away: nobody wants the answer any more

    def __init__(self, name: ModelName) -> None:
        super().__init__(f"pull of {name} cancelled")


class Pull:
    """One model's pull: its events so far, and the ability to follow the rest."""

    def __init__(self, name: ModelName) -> None:
        self.name = name
        self.events: list[Event] = []
        self.finished = False
        self.error: BaseException | None = None
        self.task: asyncio.Task[Any] | None = None  # what it does now: resolving the name, then pulling
        self.cancelled = False
        self.committing = False  # recording the model: too late to cancel
        self.followers = 0  # clients streaming its events (POST /api/pull), for a cancel that spares them
        self._changed = asyncio.Condition()
        self._files: dict[str, tuple[int, int]] = {}  # (completed, total) by file, from its latest event

    async def emit(self, event: Event) -> None:
        async with self._changed:
            self.events.append(event)
            if "total" in event:
                file = event.get("file") or event.get("digest") or ""
                self._files[file] = (event.get("completed", 0), event["total"])
            self._changed.notify_all()

    async def finish(self, error: BaseException | None = None) -> None:
        async with self._changed:
            self.finished, self.error = True, error
            self._changed.notify_all()

    async def ended(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.finished)

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """Counts a client streaming this pull's events for as long as it does."""
        self.followers += 1
        try:
            yield
        finally:
            self.followers -= 1

    def progress(self) -> Event:
        """Where the pull stands: its last status and bytes over all its files so far (the console's view)."""
        status = self.events[-1]["status"] if self.events else "resolving"
        return {"name": str(self.name), "status": status, "completed": sum(c for c, _ in self._files.values()),
                "total": sum(t for _, t in self._files.values())}

    async def follow(self) -> AsyncIterator[Event]:
        """Every event from the start, then live ones; a failed pull raises its error at the end."""
        seen = 0
        while True:
            async with self._changed:
                # wait_for calls the lambda before `seen` moves on: binding it late is what is meant
                await self._changed.wait_for(lambda: len(self.events) > seen or self.finished)  # noqa: B023
                batch, seen = self.events[seen:], len(self.events)
                done, error = self.finished and seen == len(self.events), self.error
            for event in batch:
                yield event
            if done:
                if error is not None:
                    raise error
                return


class PullManager:
    def __init__(self, store: Store, settings: Settings, spawn: Spawn, metrics: Metrics, jobs: FileJobs) -> None:
        self.store, self.settings, self.spawn, self.metrics = store, settings, spawn, metrics
        self.jobs = jobs  # hashing, commits and recording: file work, kept off the look-ups' pool
        # Where other tools keep what they downloaded, as this daemon's environment says (pulls reuse it).
        self._held_roots = tool_roots()
        self._pulls: dict[str, Pull] = {}
        self._transfers: dict[str, _Transfer] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=60)
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        return self._session

    def in_progress(self) -> list[Event]:
        """Every pull under way, as Pull.progress() tells it."""
        return [pull.progress() for pull in self._pulls.values()]

    async def start(self, name_text: str) -> Pull:
        """Resolve and start pulling (or join the pull already under way); errors before any byte moves."""
        name = parse_name(name_text)
        if (pull := self._pulls.get(name.key)) is not None:
            return pull
        pull = Pull(name)
        self._pulls[name.key] = pull
        pull.task = asyncio.ensure_future(self._plan(name))
        try:
            plan = await pull.task
        except BaseException as exc:
            del self._pulls[name.key]
            error = PullCancelledError(name) if pull.cancelled else exc
            await pull.finish(error)  # clients that joined while it resolved hear why too
            if pull.cancelled:
                raise error from None
            raise
        pull.task = self.spawn(self._run(pull, plan))
        return pull

    async def cancel(self, name_text: str, unless_followed: bool = False) -> ModelName:
        """Stop the pull of `name_text` and wait until nothing of it is left (its transfers and partial files,
        unless another pull shares them); the name it had. `unless_followed`: refuse while a client streams its
        progress (a caller that closed its own stream just before does not count)."""
        name = parse_name(name_text)
        pull = self._pulls.get(name.key)
        if pull is None or pull.task is None:
            raise NotFound(f"no pull of {name} is under way")
        if unless_followed:
            await asyncio.sleep(FOLLOWER_GONE)
            if pull.followers:
                raise Conflict(f"{pull.followers} other client{'s follow' if pull.followers > 1 else ' follows'} the "
                               f"pull of {name}, so it goes on; `r1 pull --cancel {name}` stops it for every client")
        if pull.finished:
            raise NotFound(f"no pull of {name} is under way: it has just ended")
        if pull.committing:
            raise Conflict(f"the pull of {name} is recording the model: too late to cancel it (`r1 rm` removes it)")
        pull.cancelled = True
        pull.task.cancel()
        await pull.ended()
        return pull.name

    async def _plan(self, name: ModelName) -> PullPlan | Kept:
        """What to fetch, or why the stored model stays as it is."""
        try:
            record = await asyncio.to_thread(self.store.get, name)
        except ModelNotFoundError:
            return await locate(name, self.settings, self._http())
        return await refresh(name, record, self.store, self.settings, self._http())

    async def _run(self, pull: Pull, plan: PullPlan | Kept) -> None:
        try:
            await pull.emit({"status": "pulling manifest"})
            if isinstance(plan, Kept):
                await self._keep(pull, plan)
            else:
                await self._pull(pull, plan)
        except asyncio.CancelledError as exc:
            if not pull.cancelled:  # the daemon is stopping: the partial files stay, to resume
                await pull.finish(exc)
                raise
            log.info("pull of %s cancelled", pull.name)
            await pull.finish(PullCancelledError(pull.name))
        except BaseException as exc:  # followers get the error; the task itself ends quietly
            log.warning("pull of %s failed: %s", pull.name, exc)
            await pull.finish(exc)
        else:
            await pull.finish()
        finally:
            self._pulls.pop(pull.name.key, None)

    async def _keep(self, pull: Pull, kept: Kept) -> None:
        record = kept.record
        if kept.up_to_date:  # every file is here, as Ollama reports a layer it already has
            for entry in record.manifest.files:
                await pull.emit(_progress(entry.digest, entry.path, entry.size, entry.size))
            await pull.emit({"status": "up to date", "model": record.name})
        log.info("pull of %s: %s", record.name, kept.note)
        await pull.emit({"status": "success", "model": record.name, "digest": record.manifest_id,
                         "size": record.manifest.size, "downloaded": 0, "up_to_date": kept.up_to_date,
                         "note": kept.note})

    async def _pull(self, pull: Pull, plan: PullPlan) -> None:
        started = time.monotonic()
        for note in plan.notes:
            await pull.emit({"status": note})
        entries: list[FileEntry] = []
        downloaded = 0
        for remote in plan.files:
            digest, fetched = await self._fetch(pull, plan, remote)
            entries.append(FileEntry(remote.path, digest, remote.size))
            downloaded += fetched
        pull.committing = True
        await pull.emit({"status": "verifying sha256 digest"})
        await pull.emit({"status": "writing manifest"})
        record = await self.jobs.run(self._record, plan, entries)
        seconds = time.monotonic() - started
        log.info("pulled %s from %s (%s, %d bytes downloaded in %.1f s)",
                 record.name, plan.origin, plan.choice.tag, downloaded, seconds)
        await pull.emit({
            "status": "success", "model": record.name, "digest": record.manifest_id, "size": record.manifest.size,
            "tag": plan.choice.tag, "repo": plan.origin, "downloaded": downloaded, "seconds": round(seconds, 3),
        })

    def _record(self, plan: PullPlan, entries: list[FileEntry]) -> ModelRecord:
        facts = stored_facts(self.store, plan.format, entries)
        return self.store.add(plan.name, Manifest(tuple(entries), facts, plan.overrides, plan.source))

    async def _fetch(self, pull: Pull, plan: PullPlan, remote: RemoteFile) -> tuple[str, int]:
        """The file's digest and the bytes downloaded for it (0 when the store already had it)."""
        if remote.sha256 is None:  # a small git file: its digest is known only once it is here
            digest, size = await fetch_small(self._http(), remote.url, plan.headers, self.store.blobs)
            self.metrics.bytes_pulled.inc(size)
            await pull.emit(_progress(digest, remote.path, size, size))
            return digest, size
        if self.store.blobs.has(remote.sha256, remote.size):
            await pull.emit(_progress(remote.sha256, remote.path, remote.size, remote.size))
            return remote.sha256, 0
        if await self._take_held(pull, remote):
            return remote.sha256, 0
        for attempt in (1, 2):  # a digest mismatch discards the bytes and tries once more
            transfer = self._transfers.get(remote.sha256)
            started_here = transfer is None
            if transfer is None:
                download = RangedDownload(self._http(), remote.url, plan.headers, remote.size, remote.sha256,
                                          self.store.blobs, self.settings.pull_connections, file_job=self.jobs.run)
                transfer = self._transfers[remote.sha256] = _Transfer(download, self.spawn(download.run()))
                transfer.task.add_done_callback(partial(self._forget_transfer, remote.sha256))
            download = transfer.download
            try:
                with transfer.followed_by(pull):
                    await self._report(pull, remote, download, transfer.task)
                if started_here:
                    self.metrics.bytes_pulled.inc(download.fetched)
                return remote.sha256, download.fetched if started_here else 0
            except asyncio.CancelledError:
                if pull.cancelled and not transfer.pulls:
                    await transfer.stop()
                raise
            except DigestMismatchError as exc:
                if attempt == 2:
                    raise DigestMismatchError(
                        f"{remote.path} from {plan.origin} failed its sha256 check twice ({exc}); the bytes were "
                        "discarded. The copy there or something between it and you is corrupting it; try again later"
                    ) from exc
                log.warning("%s failed its sha256 check (%s); downloading it again", remote.path, exc)
        raise AssertionError("unreachable")

    def _forget_transfer(self, sha256: str, _: asyncio.Future[Any]) -> None:
        """A finished transfer leaves the table (a done callback), so the next pull of its blob starts afresh."""
        self._transfers.pop(sha256, None)

    async def _take_held(self, pull: Pull, remote: RemoteFile) -> bool:
        """Whether Ollama or the Hugging Face cache already had the file, now in the store (linked where it
        can be, its bytes hashed): 0 bytes downloaded for it."""
        assert remote.sha256 is not None
        held = await self.jobs.run(find_held, self._held_roots, remote.sha256, remote.size)
        if held is None:
            return False
        where, path = held
        try:
            await self.jobs.run(self.store.adopt, path, sha256=remote.sha256)
        except CorruptSourceError as exc:  # not what its name says: download it after all
            log.warning("%s in %s is not what its name says (%s); downloading it", remote.path, where, exc)
            return False
        await pull.emit({"status": f"found {remote.path} in {where}: nothing to download", "digest": remote.sha256})
        await pull.emit(_progress(remote.sha256, remote.path, remote.size, remote.size))
        return True

    async def _report(self, pull: Pull, remote: RemoteFile, download: RangedDownload, task: asyncio.Task[str]) -> None:
        """Progress events until the transfer ends; its error, if any."""
        last = -1
        while not task.done():
            if download.completed != last:
                last = download.completed
                await pull.emit(_progress(remote.sha256, remote.path, remote.size, last))
            await asyncio.wait([task], timeout=PROGRESS_INTERVAL)
        await task  # raises the transfer's error, if any
        await pull.emit(_progress(remote.sha256, remote.path, remote.size, remote.size))


class _Transfer:
    """One blob's download, shared by every pull that needs it."""

    def __init__(self, download: RangedDownload, task: asyncio.Task[str]) -> None:
        self.download, self.task = download, task
        self.pulls: set[Pull] = set()

    @contextlib.contextmanager
    def followed_by(self, pull: Pull) -> Iterator[None]:
        self.pulls.add(pull)
        try:
            yield
        finally:
            self.pulls.discard(pull)

    async def stop(self) -> None:
        """No pull wants these bytes any more: stop fetching them and delete what came."""
        self.task.cancel()
        await asyncio.wait([self.task])
        self.download.discard()


def _progress(digest: str | None, path: str, total: int, completed: int) -> Event:
    short = digest.removeprefix("sha256:")[:12] if digest else path
    return {"status": f"pulling {short}", "digest": digest, "total": total, "completed": completed, "file": path}

