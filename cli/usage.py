"""`r1 usage` and `r1 log`: the request log as the daemon answers it (GET /api/usage, GET /api/log), as tables."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from urllib.parse import urlencode

from . import render
from .api import Api

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import Log, LogRow, Stream, Usage, UsageRow

USAGE_HEADERS = ("REQUESTS", "PROMPT TOKENS", "OUTPUT TOKENS", "THINKING TOKENS", "TOKENS/S", "COST", "ERRORS")
LOG_HEADERS = ("TIME", "CLIENT", "ROUTE", "MODEL", "STATUS", "TOKENS IN/OUT", "FIRST TOKEN", "TOKENS/S", "DURATION")
LOG_WIDTHS = (19, 20, 26, 20, 6, 13, 11, 8, 8)  # followed rows come one at a time: columns wide enough for most


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def usage_rows(rows: Iterable[UsageRow]) -> list[tuple[str, ...]]:
    return [(row["key"] or "(no model)", str(row["requests"]), str(row["prompt_tokens"]), str(row["output_tokens"]),
             "-" if row["thinking_tokens"] is None else str(row["thinking_tokens"]), _number(row["tokens_per_s"]),
             "-" if row["cost"] is None else f"${row['cost']:.4f}", str(row["errors"])) for row in rows]


def usage(by: str, since: str, as_json: bool, everything: bool) -> None:
    answer: Usage = Api.from_env().read("GET", "/api/usage?" + urlencode({"by": by, "since": since, "reads": int(everything)}))
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    if not answer["logging"]:
        render.say("the request log is off (R1_LOG_REQUESTS=0): these totals stop when it was turned off")
    print(render.table((by.upper(), *USAGE_HEADERS), usage_rows(answer["usage"])))


def client_text(row: LogRow) -> str:
    """`python3[4242]` over the socket, the address over TCP."""
    if row["client_kind"] == "unix":
        return f"{row['client'] or 'uid ' + str(row['client_uid'])}[{row['client_pid']}]"
    return row["client"] or row["client_kind"]


def log_row(row: LogRow) -> tuple[str, ...]:
    tokens = "-" if row["output_tokens"] is None and row["prompt_tokens"] is None else \
        f"{row['prompt_tokens'] or 0}/{row['output_tokens'] or 0}"
    first = "-" if row["first_token_s"] is None else f"{row['first_token_s']:.3f}s"
    return (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["time"])), client_text(row),
            f"{row['method']} {row['route']}", row["model"] or "-", str(row["status"]), tokens, first,
            _number(row["tokens_per_s"]), f"{row['duration_s']:.3f}s")


def log(limit: int, follow: bool, as_json: bool, everything: bool) -> None:
    api = Api.from_env()
    query = urlencode({"limit": limit, "reads": int(everything)})
    if not follow:
        answer: Log = api.read("GET", f"/api/log?{query}")
        rows = answer["requests"]
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        print(render.table(LOG_HEADERS, [log_row(row) for row in reversed(rows)]))  # oldest first, as tail
        return
    # Followed, rows come one at a time: a table per row, of fixed widths, with the headers once.
    header_shown = as_json
    followed: Stream[LogRow] = api.stream("GET", f"/api/log?{query}&follow=1")
    for row in followed:
        if as_json:
            print(json.dumps(row), flush=True)
            continue
        lines = render.table(LOG_HEADERS, [log_row(row)], LOG_WIDTHS).splitlines()
        print("\n".join(lines[1:] if header_shown else lines), flush=True)
        header_shown = True
