"""OpenAI Responses kept for a while (R1_RESPONSES_TTL), so a conversation can go on by id
(previous_response_id): r1.db's `responses` table, its migrations and queries. The Responses API
(api/responses.py) keeps and reads them through StoredResponses.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from .database import Database, Migrations

migrations = Migrations("responses")


@migrations(formerly="m005_responses")
def m001_responses(db: sqlite_utils.Database) -> None:
    # The conversation up to the answer, the answer, and the Response object.
    db.execute(
        """CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            instructions TEXT,
            input TEXT NOT NULL,
            output TEXT NOT NULL,
            response TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX responses_expiry ON responses(expires_at)")


@dataclass(frozen=True)
class StoredResponse:
    """A Response kept for previous_response_id: input and output are lists of Responses items."""

    id: str
    model: str
    created_at: float
    expires_at: float
    instructions: str | None
    input: list[Any]
    output: list[Any]
    response: dict[str, Any]

    def to_row(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "created_at": self.created_at, "expires_at": self.expires_at,
                "instructions": self.instructions, "input": json.dumps(self.input), "output": json.dumps(self.output),
                "response": json.dumps(self.response)}


def _prune(db: sqlite_utils.Database, at: float) -> int:
    """Drop the responses expired by `at` (seconds since the epoch); how many went."""
    return db.execute("DELETE FROM responses WHERE expires_at <= ?", [at]).rowcount


class StoredResponses:
    """The kept Responses: reads on a read connection, writes on r1.db's writer thread; each write
    drops the expired ones in the same transaction."""

    def __init__(self, database: Database) -> None:
        self._database = database
        database.migrate(migrations)

    def get(self, response_id: str) -> StoredResponse | None:
        """A kept Response, None when unknown or expired (expired ones are not returned, and the
        next write drops them)."""
        at = time.time()
        with self._database.reading() as db:
            rows = list(db.query("SELECT * FROM responses WHERE id = ? AND expires_at > ?", [response_id, at]))
        if not rows:
            return None
        values = rows[0]  # at most one: id is the key
        return StoredResponse(**{**values, **{k: json.loads(values[k]) for k in ("input", "output", "response")}})

    def put(self, stored: StoredResponse) -> None:
        """Keep a Response until its expires_at."""
        def write(db: sqlite_utils.Database) -> None:
            with db.atomic():
                _prune(db, stored.created_at)
                db.table("responses").upsert(stored.to_row(), pk="id")

        self._database.write(write)

    def delete(self, response_id: str) -> bool:
        """Forget a Response; False when there was none (an expired one counts as none)."""
        at = time.time()

        def write(db: sqlite_utils.Database) -> bool:
            with db.atomic():
                _prune(db, at)
                return db.execute("DELETE FROM responses WHERE id = ?", [response_id]).rowcount > 0

        return self._database.write(write)

    def prune(self) -> int:
        """Drop the expired Responses; how many went."""
        at = time.time()
        return self._database.write(lambda db: _prune(db, at))
