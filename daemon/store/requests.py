"""Queries on the request log's table (made by index.py's m007_requests): batches in, totals and rows out.

Kept apart from index.py, which is about models: these run on the same connections (the batch
on the writer thread, the reads on a read connection) but share nothing else with it.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

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


def insert(db: sqlite_utils.Database, entries: list[dict[str, Any]]) -> list[int]:
    """Record a batch in one transaction; the rows' ids, in order."""
    sql = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    with db.atomic():
        return [db.execute(sql, [entry.get(column) for column in COLUMNS]).lastrowid for entry in entries]


def prune(db: sqlite_utils.Database, before: float) -> int:
    """Forget the requests older than `before` (seconds since the epoch); how many went."""
    with db.atomic():
        return db.execute("DELETE FROM requests WHERE time < ?", [before]).rowcount


def usage(db: sqlite_utils.Database, by: str, since: float, reads: bool = True) -> list[dict[str, Any]]:
    """Totals per key (USAGE_KEYS) of the requests since `since`, most requests first; without `reads`,
    of those that did more than read the daemon's state."""
    key = USAGE_KEYS[by]
    cursor = db.execute(
        f"SELECT {key} AS key, count(*) AS requests, coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
        "coalesce(sum(output_tokens), 0) AS output_tokens, sum(thinking_tokens) AS thinking_tokens, "
        "avg(CASE WHEN output_tokens > 1 THEN tokens_per_s END) AS tokens_per_s, sum(cost) AS cost, "
        "sum(status >= 400 AND status <> 499) AS errors "  # 499: the client went away, no failure of r1's
        f"FROM requests WHERE time >= ? {'' if reads else 'AND ' + _NOT_A_READ} "
        f"GROUP BY key ORDER BY {'key' if by == 'day' else 'requests DESC, key'}",
        [since],
    )
    return _dicts(cursor)


def recent(db: sqlite_utils.Database, limit: int, reads: bool = True) -> list[dict[str, Any]]:
    """The last `limit` requests to start, newest first (a row is written when its request ends, so the ids
    are in the order they ended); without `reads`, those that did more than read the daemon's state."""
    cursor = db.execute(f"SELECT * FROM requests {'' if reads else 'WHERE ' + _NOT_A_READ} "
                        "ORDER BY time DESC, id DESC LIMIT ?", [limit])
    return _dicts(cursor)


def _dicts(cursor: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
