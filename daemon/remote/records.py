"""Remote engines and prices as r1.db keeps them: where an OpenAI- or Ollama-dialect server is, and where
its key comes from (never the key itself: an environment variable's name, or a file of r1's own).

Prices belong to the upstream model, not to a local name (a remote model is a store name, models.py),
so they are kept apart, keyed "REMOTE:upstream-id".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from ..database import Database, Migrations

DIALECTS = ("openai", "ollama")

migrations = Migrations("remotes")


@migrations(formerly="m004_remotes")
def m001_remotes(db: sqlite_utils.Database) -> None:
    # Remote engines and the prices of their models, per million tokens.
    db.execute(
        """CREATE TABLE remotes (
            name TEXT PRIMARY KEY,
            urls TEXT NOT NULL,
            dialect TEXT NOT NULL,
            key_env TEXT,
            key_file TEXT,
            headers TEXT NOT NULL DEFAULT '{}',
            ca_file TEXT
        )"""
    )
    db.execute(
        """CREATE TABLE remote_prices (
            upstream TEXT PRIMARY KEY,
            input REAL NOT NULL,
            output REAL NOT NULL
        )"""
    )


@dataclass(frozen=True)
class Remote:
    name: str
    urls: tuple[str, ...]  # one engine behind a pool: each serves the same models
    dialect: str = "openai"
    key_env: str | None = None  # the daemon's environment variable that holds the key
    key_file: str | None = None  # a file in $R1_HOME/remotes/, mode 0600
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (e.g. an organisation)
    ca_file: str | None = None  # a private CA's certificates, for TLS to it

    def to_row(self) -> dict[str, Any]:
        return {"name": self.name, "urls": json.dumps(list(self.urls)), "dialect": self.dialect,
                "key_env": self.key_env, "key_file": self.key_file, "headers": json.dumps(self.headers),
                "ca_file": self.ca_file}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Remote:
        return cls(row["name"], tuple(json.loads(row["urls"])), row["dialect"], row["key_env"], row["key_file"],
                   json.loads(row["headers"]), row["ca_file"])


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, output_tokens: int) -> float:
        return (prompt_tokens * self.input + output_tokens * self.output) / 1_000_000


class RemoteRecords:
    """The remotes and prices in r1.db: reads on a read connection, writes on its writer thread."""

    def __init__(self, database: Database) -> None:
        self._database = database
        database.migrate(migrations)

    def remotes(self, name: str | None = None) -> list[Remote]:
        """Every remote engine, or the one named `name` (an empty list when there is none)."""
        where, args = ("WHERE name = ?", [name]) if name is not None else ("", [])
        with self._database.reading() as db:
            return [Remote.from_row(row) for row in db.query(f"SELECT * FROM remotes {where} ORDER BY name", args)]

    def price(self, upstream: str) -> Price | None:
        """The price of an upstream model ("REMOTE:id"), if one was set."""
        with self._database.reading() as db:
            row = db.execute("SELECT input, output FROM remote_prices WHERE upstream = ?", [upstream]).fetchone()
        return Price(*row) if row else None

    def put_remote(self, remote: Remote) -> None:
        self._database.write(lambda db: db.table("remotes").upsert(remote.to_row(), pk="name"))

    def drop_remote(self, name: str) -> bool:
        """Forget a remote; False when there was none."""
        return self._database.write(lambda db: db.execute("DELETE FROM remotes WHERE name = ?", [name]).rowcount > 0)

    def set_price(self, upstream: str, price: Price) -> None:
        row = {"upstream": upstream, "input": price.input, "output": price.output}
        self._database.write(lambda db: db.table("remote_prices").upsert(row, pk="upstream"))
