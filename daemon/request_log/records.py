"""The request log's table in r1.db: its migrations, batches in, totals and rows out.

One row per finished API request, pruned after R1_LOG_RETENTION; prompt and answer stay null unless
R1_LOG_PROMPTS=1. The batch runs on r1.db's writer thread, the reads on a read connection of their own.
"""

from __future__ import annotations

from typing import Any, cast

import sqlite_utils

from ..database import Database, Migrations

migrations = Migrations("requests")


@migrations(formerly="m007_requests")
def m001_requests(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            client_kind TEXT NOT NULL CHECK (client_kind IN ('unix', 'tcp', 'other')),
            client TEXT,
            client_uid INTEGER,
            client_pid INTEGER,
            dialect TEXT NOT NULL,
            method TEXT NOT NULL,
            route TEXT NOT NULL,
            model TEXT,
            status INTEGER NOT NULL,
            prompt_tokens INTEGER,
            output_tokens INTEGER,
            thinking_tokens INTEGER,
            first_token_s REAL,
            tokens_per_s REAL,
            duration_s REAL NOT NULL,
            cost REAL,
            error_text TEXT,
            prompt TEXT,
            answer TEXT
        )"""
    )
    db.execute("CREATE INDEX requests_time ON requests(time)")


COLUMNS = ("time", "client_kind", "client", "client_uid", "client_pid", "dialect", "method", "route", "model",
           "status", "prompt_tokens", "output_tokens", "thinking_tokens", "first_token_s", "tokens_per_s",
           "duration_s", "cost", "error_text", "prompt", "answer")

# `--by`: what a usage row is keyed on. A client is a program (its name and uid) or a TCP address,
# not a pid: each `r1 run` is another process of the same program.
USAGE_KEYS = {
    "model": "coalesce(model, '')",
    "day": "date(time, 'unixepoch', 'localtime')",
    "client": "client_kind || ':' || coalesce(client, '') || coalesce(' uid ' || client_uid, '')",
}


# Reads of the daemon's state (r1 list, ps, show, the console's polling): left out of totals and of `r1 log`
# unless asked for, so that they do not bury the requests that used a model.
READ_METHODS = ("GET", "HEAD")
READ_ROUTES = ("/api/show",)
_NOT_A_READ = (f"NOT (method IN ({', '.join(repr(m) for m in READ_METHODS)}) "
               f"OR route IN ({', '.join(repr(r) for r in READ_ROUTES)}))")


def is_read(row: dict[str, Any]) -> bool:
    """Whether a logged request only read the daemon's state (as _NOT_A_READ tells it in SQL)."""
    return row["method"] in READ_METHODS or row["route"] in READ_ROUTES


def _insert(db: sqlite_utils.Database, entries: list[dict[str, Any]]) -> list[int]:
    sql = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    with db.atomic():
        # An INSERT's cursor always has its row's id.
        return [cast(int, db.execute(sql, [entry.get(column) for column in COLUMNS]).lastrowid) for entry in entries]


def _prune(db: sqlite_utils.Database, before: float) -> int:
    with db.atomic():
        return db.execute("DELETE FROM requests WHERE time < ?", [before]).rowcount


class RequestRecords:
    """The logged requests in r1.db."""

    def __init__(self, database: Database) -> None:
        self._database = database
        database.migrate(migrations)

    def insert(self, entries: list[dict[str, Any]]) -> list[int]:
        """Record a batch of finished requests in one transaction; the rows' ids, in order. Raises sqlite3's
        errors (disk full, read-only)."""
        return self._database.write(lambda db: _insert(db, entries))

    def prune(self, before: float) -> int:
        """Forget the requests older than `before` (seconds since the epoch); how many went."""
        return self._database.write(lambda db: _prune(db, before))

    def usage(self, by: str, since: float, reads: bool = True) -> list[dict[str, Any]]:
        """Totals per key (USAGE_KEYS) of the requests since `since`, most requests first; without `reads`,
        of those that did more than read the daemon's state."""
        key = USAGE_KEYS[by]
        with self._database.reading() as db:
            return list(db.query(
                f"SELECT {key} AS key, count(*) AS requests, coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
                "coalesce(sum(output_tokens), 0) AS output_tokens, sum(thinking_tokens) AS thinking_tokens, "
                "avg(CASE WHEN output_tokens > 1 THEN tokens_per_s END) AS tokens_per_s, sum(cost) AS cost, "
                "sum(status >= 400 AND status <> 499) AS errors "  # 499: the client went away, no failure of r1's
                f"FROM requests WHERE time >= ? {'' if reads else 'AND ' + _NOT_A_READ} "
                f"GROUP BY key ORDER BY {'key' if by == 'day' else 'requests DESC, key'}",
                [since],
            ))

    def recent(self, limit: int, reads: bool = True) -> list[dict[str, Any]]:
        """The last `limit` requests to start, newest first (a row is written when its request ends, so the ids
        are in the order they ended); without `reads`, those that did more than read the daemon's state."""
        with self._database.reading() as db:
            return list(db.query(f"SELECT * FROM requests {'' if reads else 'WHERE ' + _NOT_A_READ} "
                                 "ORDER BY time DESC, id DESC LIMIT ?", [limit]))
