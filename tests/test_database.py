"""r1.db shared by the features: each one's migrations, the upgrade from the single migration set an older
r1 kept, and reads that never wait for the writer."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from r1.daemon.database import LEGACY_SET, Database, Migrations
from r1.daemon.kernel_crashes import KernelCrashes
from r1.daemon.kernel_crashes import migrations as kernel_crash_migrations
from r1.daemon.remote.models import remote_of
from r1.daemon.remote.records import Price, Remote, RemoteRecords
from r1.daemon.remote.records import migrations as remote_migrations
from r1.daemon.request_log.records import RequestRecords
from r1.daemon.request_log.records import migrations as request_migrations
from r1.daemon.store import Store
from r1.daemon.store.index import migrations as store_migrations
from r1.daemon.stored_responses import StoredResponses
from r1.daemon.stored_responses import migrations as response_migrations

FEATURES = (store_migrations, kernel_crash_migrations, remote_migrations, response_migrations, request_migrations)
BEFORE_FEATURES = Path(__file__).parent / "fixtures" / "r1_db_one_migration_set.sql"
CRASH = ("llama-cpp-python 0.3.36", "Xeon", "gemma's runner was killed by SIGSEGV")


def bookkeeping(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT migration_set, name FROM _sqlite_migrations ORDER BY migration_set, id").fetchall()


@contextmanager
def opened(home: Path) -> Iterator[tuple[Store, Database]]:
    """The store and r1.db as the daemon opens them; every feature's migrations applied."""
    store = Store(home)
    store.open()
    try:
        yield store, store.database
    finally:
        store.close()


def test_each_feature_migrates_its_own_tables_once() -> None:
    db = sqlite_utils.Database(memory=True)
    for migrations in FEATURES * 2:
        migrations.apply(db)
    assert [c.name for c in db["kernel_crashes"].columns] == ["engine", "cpu", "reason", "recorded_at"]
    assert [c.name for c in db["remotes"].columns] == ["name", "urls", "dialect", "key_env", "key_file", "headers",
                                                       "ca_file"]
    assert [c.name for c in db["remote_prices"].columns] == ["upstream", "input", "output"]
    assert [c.name for c in db["responses"].columns] == ["id", "model", "created_at", "expires_at", "instructions",
                                                         "input", "output", "response"]
    assert [c.name for c in db["requests"].columns] == ["id", "time", "client_kind", "client", "client_uid", "client_pid",
                                                        "dialect", "method", "route", "model", "status", "prompt_tokens",
                                                        "output_tokens", "thinking_tokens", "first_token_s",
                                                        "tokens_per_s", "duration_s", "cost", "error_text", "prompt", "answer"]
    assert {m.feature: m.applied(db) for m in FEATURES} == {
        "store": ["m001_initial", "m002_facts_apart_from_overrides", "m003_blob_sources"],
        "kernel_crashes": ["m001_kernel_crashes"], "remotes": ["m001_remotes"], "responses": ["m001_responses"],
        "requests": ["m001_requests"],
    }
    assert all(m.pending(db) == [] for m in FEATURES)


def test_a_database_of_the_single_migration_set_keeps_its_rows(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "r1.db") as db:
        db.executescript(BEFORE_FEATURES.read_text())
    with opened(home) as (store, database):
        assert remote_of(store.get("cloud-model").manifest) == ("cloud", "gpt-x")
        assert store.get("cloud-model").manifest.facts.context_length == 8192
        records = RemoteRecords(database)
        assert records.remotes() == [Remote("cloud", ("https://api.example.com/v1",), "openai", "CLOUD_KEY")]
        assert records.price("cloud:gpt-x") == Price(1.5, 6.0)
        kept = StoredResponses(database).get("resp_kept")
        assert kept is not None and kept.input == [{"role": "user", "content": "hi"}]
        assert [(row["route"], row["model"]) for row in RequestRecords(database).recent(10)] == [
            ("/api/chat", "cloud-model")]
        assert KernelCrashes(database).kernel_crash(*CRASH[:2]) == CRASH[2]
    applied = bookkeeping(home / "r1.db")
    assert not [row for row in applied if row[0] == LEGACY_SET], "every step now belongs to its feature"
    assert applied == [("kernel_crashes", "m001_kernel_crashes"), ("remotes", "m001_remotes"),
                       ("requests", "m001_requests"), ("responses", "m001_responses"), ("store", "m001_initial"),
                       ("store", "m002_facts_apart_from_overrides"), ("store", "m003_blob_sources")]
    with opened(home) as (_, database):
        for feature in (RemoteRecords, StoredResponses, RequestRecords, KernelCrashes):
            feature(database)
    assert bookkeeping(home / "r1.db") == applied, "no step runs twice"


def test_an_older_database_gets_the_tables_it_never_had(tmp_path: Path) -> None:
    # An r1 from before remotes: the single set up to m003, and a kernel crash recorded.
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "r1.db") as db:
        db.executescript(BEFORE_FEATURES.read_text())
        for table in ("remotes", "remote_prices", "responses", "blob_sources", "requests"):
            db.execute(f"DROP TABLE {table}")
        db.execute("DELETE FROM _sqlite_migrations WHERE name >= 'm004'")
    with opened(home) as (store, database):
        assert store.get("cloud-model").name == "cloud-model:latest"
        assert KernelCrashes(database).kernel_crash(*CRASH[:2]) == CRASH[2]
        RemoteRecords(database).put_remote(Remote("local", ("http://127.0.0.1:8080/v1",)))
        assert [r.name for r in RemoteRecords(database).remotes()] == ["local"]
        assert StoredResponses(database).get("resp_kept") is None
        assert RequestRecords(database).recent(10) == []


def test_a_kernel_crash_is_remembered_across_restarts(tmp_path: Path) -> None:
    database = Database(tmp_path / "r1.db")
    assert KernelCrashes(database).kernel_crash(*CRASH[:2]) is None
    KernelCrashes(database).record_kernel_crash(*CRASH)
    database.close()
    database = Database(tmp_path / "r1.db")
    crashes = KernelCrashes(database)
    assert crashes.kernel_crash(*CRASH[:2]) == CRASH[2]
    assert crashes.kernel_crash("llama-cpp-python 0.3.37", "Xeon") is None  # a new version tries again
    assert crashes.kernel_crash("llama-cpp-python 0.3.36", "EPYC") is None
    database.close()


def test_a_feature_numbers_its_steps_on_its_own(tmp_path: Path) -> None:
    notes = Migrations("notes")

    @notes()
    def m001_notes(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE notes (text TEXT)")

    database = Database(tmp_path / "r1.db")
    database.migrate(notes)
    database.migrate(kernel_crash_migrations)
    database.close()
    assert bookkeeping(tmp_path / "r1.db") == [("kernel_crashes", "m001_kernel_crashes"), ("notes", "m001_notes")]


# SQLite off the hot path


def test_readers_do_not_wait_for_an_open_write_transaction(tmp_path: Path) -> None:
    database = Database(tmp_path / "r1.db")
    crashes = KernelCrashes(database)
    inside, release = threading.Event(), threading.Event()

    def slow_write(db: sqlite_utils.Database) -> None:
        with db.atomic():
            db.execute("INSERT INTO kernel_crashes VALUES ('engine', 'cpu', 'crashed', 'now')")
            inside.set()
            release.wait(10)

    writer = threading.Thread(target=database.write, args=(slow_write,))
    writer.start()
    try:
        assert inside.wait(5)
        started = time.monotonic()
        assert crashes.kernel_crash("engine", "cpu") is None, "a reader sees the last committed state"
        assert time.monotonic() - started < 1
    finally:
        release.set()
        writer.join()
    assert crashes.kernel_crash("engine", "cpu") == "crashed"
    database.close()
