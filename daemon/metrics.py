"""Prometheus metrics, in the text exposition format, with no client library.

One registry per app (`Metrics`, made by `create_app` or handed to it by a test): the
code that sees an event counts it where it happens; GET /metrics renders the counters
plus gauges read from the scheduler at that moment.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from contextvars import ContextVar
from typing import Any

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels] + ([extra] if extra else [])
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Counter:
    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self.values: dict[Labels, float] = defaultdict(float)
        self._lock = threading.Lock()  # pulls count bytes from worker threads

    def inc(self, amount: float = 1, **labels: str) -> None:
        with self._lock:
            self.values[tuple(sorted(labels.items()))] += amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        return lines + [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self.values.items())]


class Histogram:
    def __init__(self, name: str, help: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help, buckets
        self.counts = [0] * (len(buckets) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        total = 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts):
            total += count
            le = "+Inf" if bound == float("inf") else _number(bound)
            lines.append(f'{self.name}_bucket{{le="{le}"}} {total}')
        return lines + [f"{self.name}_sum {_number(self.sum)}", f"{self.name}_count {total}"]


def _single(kind: str, name: str, help: str, value: float) -> list[str]:
    """A counter or gauge with no labels whose value lives elsewhere (the scheduler)."""
    return [f"# HELP {name} {help}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"]


class Metrics:
    def __init__(self) -> None:
        self.requests = Counter("r1_requests_total", "HTTP requests by route and status.")
        self.tokens = Counter("r1_generated_tokens_total", "Tokens generated, by model.")
        self.prompt_tokens = Counter("r1_prompt_tokens_total", "Prompt tokens evaluated, by model.")
        self.draft_tokens = Counter("r1_draft_tokens_total", "Tokens speculative decoding drafted, by model.")
        self.draft_accepted = Counter("r1_draft_accepted_tokens_total",
                                      "Drafted tokens the model confirmed (kept), by model.")
        self.bytes_pulled = Counter("r1_pulled_bytes_total", "Bytes downloaded from the Hub by pulls.")
        self.first_token = Histogram("r1_time_to_first_token_seconds", "From a generation request to its first token.",
                                     (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.decode_rate = Histogram("r1_decode_tokens_per_second", "Decode speed of each generation.",
                                     (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
        self.requests_logged = Counter("r1_request_log_written_total", "Requests recorded in the request log.")
        self.requests_dropped = Counter("r1_request_log_dropped_total",
                                        "Requests the request log could not record (database not writable, queue full).")

    def render(self, scheduler: Any) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.tokens, self.prompt_tokens, self.draft_tokens, self.draft_accepted,
                       self.bytes_pulled, self.first_token, self.decode_rate, self.requests_logged, self.requests_dropped):
            lines += metric.render()
        lines += _single("counter", "r1_model_loads_total", "Runners started.", scheduler.loads)
        lines += _single("counter", "r1_model_evictions_total", "Idle models unloaded to make room for another.",
                         scheduler.evictions)
        lines += _single("gauge", "r1_models_loaded", "Model instances loaded or loading.", len(scheduler.instances()))
        lines += _single("gauge", "r1_memory_used_bytes", "Memory the loaded models take (measured, else estimated).",
                         scheduler.used)
        lines += _single("gauge", "r1_memory_budget_bytes", "R1_MEMORY_BUDGET.", scheduler.budget)
        lines += _single("gauge", "r1_queue_depth", "Requests waiting for memory or for their turn.", scheduler.waiting)
        return "\n".join(lines) + "\n"


# What a request did (model, tokens, timings), for its log line: set per request by the access
# middleware, filled in by the code that knows (it runs in the request's task and context).
REQUEST_FACTS: ContextVar[dict[str, Any] | None] = ContextVar("r1_request_facts", default=None)


def note(**facts: Any) -> None:
    found = REQUEST_FACTS.get()
    if found is not None:
        found.update(facts)


# Facts that hold text (R1_LOG_PROMPTS): kept for the request log, never written to the log line.
# The access middleware puts an empty ANSWER list in a request's facts when it wants the text.
PROMPT, ANSWER = "prompt", "answer"
TEXT_FACTS = (PROMPT, ANSWER)


def answer_text() -> list[str] | None:
    """Where to append the answer's text, when the request log keeps it; None (the usual case) when not."""
    found = REQUEST_FACTS.get()
    return None if found is None else found.get(ANSWER)
