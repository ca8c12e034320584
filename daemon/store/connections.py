"""The index's connections: one writer thread, and readers that never wait for it.

In WAL mode SQLite lets a reader see the last committed state while a write is under way.
So reads (every generation looks its model up) run on read connections of their own, in
whichever thread asks, and never queue behind an `r1 rm`, an import or a repair. Writes,
together with the file work whose order they decide (snapshot links before a model is
recorded, unlinks after the transaction that forgot the files), run one at a time on the
writer thread, fed through a queue (as datasette's execute_write_fn).
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from .index import Index, migrations

T = TypeVar("T")
Job = Callable[[Index], Any]


def _connect(path: Path) -> sqlite_utils.Database:
    # isolation_level=None: transactions are explicit (sqlite-utils' atomic(), reading()'s BEGIN).
    db = sqlite_utils.Database(sqlite3.connect(path, check_same_thread=False, isolation_level=None))
    # sqlite-utils learns whether SQLite has ON CONFLICT by creating a table at the first upsert. On a full
    # disk that fails, and for the connection's life it falls back to INSERT OR IGNORE then UPDATE, which
    # silently stores nothing in a table with NOT NULL columns (a Response, a remote). SQLite's version says.
    db._supports_on_conflict = sqlite3.sqlite_version_info >= (3, 24, 0)
    return db


class IndexConnections:
    def __init__(self, path: Path) -> None:
        self._path = path
        writer = _connect(path)
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA synchronous=FULL")  # a recorded blob must survive power loss
        writer.execute("PRAGMA foreign_keys=ON")
        migrations.apply(writer)
        self._writer = Index(writer)
        self._jobs: queue.SimpleQueue[tuple[Job, Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="r1-index-writer", daemon=True)
        self._thread.start()
        self._idle_readers: queue.SimpleQueue[Index] = queue.SimpleQueue()
        self._readers: list[Index] = []  # every read connection, to close them all
        self._readers_lock = threading.Lock()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Index]:
        """An index on a read connection of the caller's own, seeing one committed state throughout."""
        try:
            index = self._idle_readers.get_nowait()
        except queue.Empty:
            index = self._new_reader()
        index.db.execute("BEGIN")
        try:
            yield index
        finally:
            index.db.execute("COMMIT")
            self._idle_readers.put(index)

    def _new_reader(self) -> Index:
        db = _connect(self._path)
        db.execute("PRAGMA query_only=ON")
        index = Index(db)
        with self._readers_lock:
            self._readers.append(index)
        return index

    def write(self, job: Callable[[Index], T]) -> T:
        """Run `job` on the writer thread, after the writes queued before it; its result or its error."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a write job cannot queue another write: it would wait for itself")
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future.result()

    def _write_loop(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, future = item
            try:
                future.set_result(job(self._writer))
            except BaseException as exc:  # the caller's to handle; the writer goes on
                future.set_exception(exc)

    def close(self) -> None:
        """Finish the queued writes, then close every connection."""
        self._jobs.put(None)
        self._thread.join()
        self._writer.db.close()
        with self._readers_lock:
            for index in self._readers:
                index.db.close()
            self._readers.clear()
