"""Kernel-crash memory in r1.db (kernels.py's CrashBook): engines whose fast kernels crashed on this
machine's CPU (llama.cpp's AMX and repacked weights), so later loads, after restarts too, go straight
to the safe kernels instead of crashing again."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlite_utils

from .database import Database, Migrations

migrations = Migrations("kernel_crashes")


@migrations(formerly="m002_kernel_crashes")
def m001_kernel_crashes(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE kernel_crashes (
            engine TEXT NOT NULL,
            cpu TEXT NOT NULL,
            reason TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            PRIMARY KEY (engine, cpu)
        )"""
    )


class KernelCrashes:
    """The crashes recorded, by engine version and CPU."""

    def __init__(self, database: Database) -> None:
        self._database = database
        database.migrate(migrations)

    def kernel_crash(self, engine: str, cpu: str) -> str | None:
        """Why `engine`'s fast kernels are known to crash on `cpu`; None if they are not."""
        with self._database.reading() as db:
            row = db.execute("SELECT reason FROM kernel_crashes WHERE engine = ? AND cpu = ?", [engine, cpu]).fetchone()
        return row[0] if row else None

    def record_kernel_crash(self, engine: str, cpu: str, reason: str) -> None:
        recorded_at = datetime.now(UTC).isoformat()
        self._database.write(lambda db: db.execute(
            "INSERT INTO kernel_crashes (engine, cpu, reason, recorded_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(engine, cpu) DO UPDATE SET reason = excluded.reason, recorded_at = excluded.recorded_at",
            [engine, cpu, reason, recorded_at],
        ))
