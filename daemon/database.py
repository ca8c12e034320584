"""r1.db, shared by every feature that keeps something: one writer thread, readers that never wait for it,
and each feature's own migrations.

In WAL mode SQLite lets a reader see the last committed state while a write is under way.
So reads (every generation looks its model up) run on read connections of their own, in
whichever thread asks, and never queue behind an `r1 rm`, an import or a repair. Writes,
together with the file work whose order they decide (the store's snapshot links before a model
is recorded, unlinks after the transaction that forgot the files), run one at a time on the
writer thread, fed through a queue (as datasette's execute_write_fn).

Each feature (the model store, remotes, stored Responses, the request log, kernel crashes) owns
its tables and declares their migrations in a `Migrations` of its own name; opening the feature
applies them. This module knows no feature.
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

T = TypeVar("T")
Job = Callable[[sqlite_utils.Database], Any]
Step = Callable[[sqlite_utils.Database], None]

# Before each feature kept its own migrations, r1 recorded every one in this single set (m001..m007).
LEGACY_SET = "r1"


def _connect(path: Path) -> sqlite_utils.Database:
    # isolation_level=None: transactions are explicit (sqlite-utils' atomic(), reading()'s BEGIN).
    db = sqlite_utils.Database(sqlite3.connect(path, check_same_thread=False, isolation_level=None))
    # sqlite-utils learns whether SQLite has ON CONFLICT by creating a table at the first upsert. On a full
    # disk that fails, and for the connection's life it falls back to INSERT OR IGNORE then UPDATE, which
    # silently stores nothing in a table with NOT NULL columns (a Response, a remote). SQLite's version says.
    db._supports_on_conflict = sqlite3.sqlite_version_info >= (3, 24, 0)
    return db


class Migrations:
    """One feature's ordered schema changes, recorded by sqlite-utils in `_sqlite_migrations` under the
    feature's name, so features add tables without numbering against each other."""

    def __init__(self, feature: str) -> None:
        self.feature = feature
        self._steps = sqlite_utils.Migrations(feature)
        self._formerly: dict[str, str] = {}  # step -> its name in LEGACY_SET

    def __call__(self, *, formerly: str | None = None) -> Callable[[Step], Step]:
        """Registers a step (in order); `formerly`: the name it had in LEGACY_SET, so a database that
        ran it there does not run it again."""
        def register(step: Step) -> Step:
            self._steps()(step)
            if formerly is not None:
                self._formerly[step.__name__] = formerly
            return step

        return register

    def apply(self, db: sqlite_utils.Database, *, stop_before: str | None = None) -> None:
        """Run the steps this database has not run, each in a transaction with its record; with
        `stop_before`, only those before that step (a test makes an older database so)."""
        with db.atomic():
            self._adopt_legacy(db)
        self._steps.apply(db, stop_before=stop_before)

    def applied(self, db: sqlite_utils.Database) -> list[str]:
        return [migration.name for migration in self._steps.applied(db)]

    def pending(self, db: sqlite_utils.Database) -> list[str]:
        return [migration.name for migration in self._steps.pending(db)]

    def _adopt_legacy(self, db: sqlite_utils.Database) -> None:
        """Record the steps an older r1 ran in LEGACY_SET as this feature's own."""
        if not self._formerly or not db[sqlite_utils.Migrations.migrations_table].exists():
            return
        for name, old in self._formerly.items():
            db.execute(f"UPDATE {sqlite_utils.Migrations.migrations_table} SET migration_set = ?, name = ? "
                       "WHERE migration_set = ? AND name = ?", [self.feature, name, LEGACY_SET, old])


class Database:
    def __init__(self, path: Path) -> None:
        self._path = path
        writer = _connect(path)
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA synchronous=FULL")  # a recorded blob must survive power loss
        writer.execute("PRAGMA foreign_keys=ON")
        self._writer = writer
        self._jobs: queue.SimpleQueue[tuple[Job, Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="r1-db-writer", daemon=True)
        self._thread.start()
        self._idle_readers: queue.SimpleQueue[sqlite_utils.Database] = queue.SimpleQueue()
        self._readers: list[sqlite_utils.Database] = []  # every read connection, to close them all
        self._readers_lock = threading.Lock()

    def migrate(self, migrations: Migrations) -> None:
        """Bring a feature's tables up to date (on the writer thread: after the writes queued before)."""
        self.write(migrations.apply)

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite_utils.Database]:
        """A read connection of the caller's own, seeing one committed state throughout."""
        try:
            db = self._idle_readers.get_nowait()
        except queue.Empty:
            db = self._new_reader()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")
            self._idle_readers.put(db)

    def _new_reader(self) -> sqlite_utils.Database:
        db = _connect(self._path)
        db.execute("PRAGMA query_only=ON")
        with self._readers_lock:
            self._readers.append(db)
        return db

    def write(self, job: Callable[[sqlite_utils.Database], T]) -> T:
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
        self._writer.close()
        with self._readers_lock:
            for db in self._readers:
                db.close()
            self._readers.clear()
