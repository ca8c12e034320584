"""Formatting for people: sizes, ages, tables, progress. Results go to stdout, progress to stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone


def human_size(n: int | float) -> str:
    """Decimal units, as Ollama and `ls -h --si` show them: 98 MB, 4.7 GB."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def _ago(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'} ago"


def human_age(timestamp: str, now: datetime | None = None) -> str:
    """'3 minutes ago' from an ISO 8601 time with a zone."""
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - then).total_seconds()))
    for unit, length in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400),
                         ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            return _ago(seconds // length, unit)
    return "just now" if seconds < 5 else _ago(seconds, "second")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns three spaces apart, like Ollama's lists."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


class Progress:
    """One updating line on stderr per file: label, percent, bytes, speed; silent when not a terminal."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.label: str | None = None
        self.started = 0.0
        self.last_draw = 0.0

    def update(self, label: str, completed: int, total: int) -> None:
        now = time.monotonic()
        if label != self.label:
            self.finish()
            self.label, self.started, self.last_draw = label, now, 0.0
        if not self.live or (now - self.last_draw < 0.1 and completed < total):
            return
        self.last_draw = now
        percent = 100 * completed / total if total else 100
        speed = completed / max(now - self.started, 1e-6)
        self.stream.write(
            f"\r{label}  {percent:3.0f}%  {human_size(completed)}/{human_size(total)}  {human_size(speed)}/s\x1b[K"
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.label is not None and self.live:
            self.stream.write("\n")
            self.stream.flush()
        self.label = None
