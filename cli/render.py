"""Formatting for people: sizes, ages, tables, progress. Results go to stdout, progress to stderr."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import Loaded, ProgressEvent


def say(message: str) -> None:
    """A note for the person at the terminal: on stderr, so stdout stays the result alone; on a
    terminal, wrapped at word boundaries to its width (a name or path longer than a line stays whole)."""
    if sys.stderr.isatty():
        message = wrap_words(message, _terminal_width())
    print(message, file=sys.stderr, flush=True)


def _terminal_width() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except OSError:
        return 80


def wrap_words(text: str, width: int) -> str:
    """Each line of `text` wrapped at spaces to `width` columns; words are never cut."""
    if all(len(line) <= width for line in text.splitlines()):
        return text
    import textwrap  # only for a note that needs it

    def fill(line: str) -> str:
        indent = line[:len(line) - len(line.lstrip())]  # a wrapped indented line keeps its indent
        return textwrap.fill(line, width, subsequent_indent=indent, break_long_words=False,
                             break_on_hyphens=False) or line

    return "\n".join(fill(line) for line in text.splitlines())


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
        then = then.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, length in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400),
                         ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            return _ago(seconds // length, unit)
    return "just now" if seconds < 5 else _ago(seconds, "second")


def human_until(timestamp: str, now: datetime | None = None) -> str:
    """`r1 ps`'s UNTIL: '4 minutes from now', or 'Forever' for a model kept loaded."""
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    if then.year >= 2200:  # Ollama's way of writing "never"
        return "Forever"
    seconds = int((then - (now or datetime.now(UTC))).total_seconds())
    if seconds < 1:
        return "Less than a second"
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= length:
            count = seconds // length
            return f"{count} {unit}{'s' if count != 1 else ''} from now"
    return "Less than a second"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int] = ()) -> str:
    """Left-aligned columns three spaces apart, like Ollama's lists; `widths`: the least width of each
    column, so that rows printed one at a time (`r1 log --follow`) line up."""
    least = list(widths) or [0] * len(headers)
    widths = [max(least[i], *(len(str(row[i])) for row in [headers, *rows])) for i in range(len(headers))]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(label: str, completed: int, total: int, speed: float, width: int = 24) -> str:
    """`label  42% [##########..............]  105 MB/253 MB  61 MB/s  ETA 2s`"""
    fraction = completed / total if total else 1.0
    filled = int(width * fraction)
    eta = f"ETA {human_duration((total - completed) / speed)}" if speed > 0 and completed < total else ""
    return (f"{label}  {fraction * 100:3.0f}% [{'#' * filled}{'.' * (width - filled)}]  "
            f"{human_size(completed)}/{human_size(total)}  {human_size(speed)}/s  {eta}").rstrip()


class Progress:
    """One updating line on stderr per file, with a bar, speed and ETA; silent when not a terminal."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.label: str | None = None
        self.started = 0.0
        self.base = 0  # bytes already there when this file started: not part of its speed
        self.last_draw = 0.0

    def update(self, label: str, completed: int, total: int) -> None:
        now = time.monotonic()
        if label != self.label:
            self.finish()
            self.label, self.started, self.base, self.last_draw = label, now, completed, 0.0
        if not self.live or (now - self.last_draw < 0.1 and completed < total):
            return
        self.last_draw = now
        # Speed counts only what moved in this run: a resumed file starts part-way.
        speed = (completed - self.base) / max(now - self.started, 1e-6)
        self.stream.write(f"\r{progress_line(label, completed, total, speed)}\x1b[K")
        self.stream.flush()

    def pulling(self, event: ProgressEvent) -> bool:
        """Draw a pull's progress event (its status and file); False for any other event, with the bar ended."""
        if "total" not in event:
            self.finish()
            return False
        self.update(f"{event['status']} {event.get('file', '')}".rstrip(), event.get("completed", 0), event["total"])
        return True

    def finish(self) -> None:
        if self.label is not None and self.live:
            self.stream.write("\n")
            self.stream.flush()
        self.label = None


def twice_loaded(models: Sequence[Loaded]) -> list[str]:
    """Why `r1 ps` lists a model more than once: its requests asked for other load options
    (num_thread, num_gpu...), and each set of them gets a runner of its own."""
    by_name: dict[str, list[Loaded]] = {}
    for model in models:
        by_name.setdefault(model["name"], []).append(model)
    notes = []
    for name, rows in by_name.items():
        if len(rows) < 2:
            continue
        sets = []
        for row in rows:
            options = row.get("options") or {}
            # Not num_ctx or num_parallel: r1 sizes those within one set (a larger context replaces a smaller one).
            sets.append(", ".join(f"{k} {v}" for k, v in sorted(options.items())
                                  if k not in ("num_ctx", "num_parallel")) or "defaults")
        notes.append(f"{name} is loaded {len(rows)} times: its requests asked for other load options "
                     f"({'; '.join(sorted(sets))}), and each set gets a runner of its own")
    return notes
