"""The budget a chat template renders within: time, loop iterations and calls, output size, source size.

Chat templates are code from model files, registries and requests: a nested loop, `'a' * 10**9` or a
macro that calls itself would otherwise hold a runner, and every client of its model, for as long as
they like. Each render gets a RenderBudget; the guarded environment (templates/sandbox.py), the Go
helpers (templates/go/funcs.py) and the output stream (templates/template.py) charge it, and going over a limit raises
TemplateLimitError, whose message names the limit and the setting that changes it (a 400 for the
request, nothing for anyone else). The renderer process (templates/renderer.py) is the backstop for what these
checks cannot see: it is killed when it overruns its time, and its address space is capped.

A module of its own, beside templates/ rather than in it: the scheduler, the runner and the Go helpers
(templates/go/) all read it, and templates/ imports go/, so a budget inside templates/ would make the
two packages import each other.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from .config import SETTINGS, Settings, parse_duration, parse_size

MiB = 1024 * 1024
# The renderer's memory beyond what it holds once started: room for the request's messages and tools,
# and for a few values of the largest size R1_TEMPLATE_MAX_OUTPUT allows, with their copies.
MEMORY_BASE = 512 * MiB
MEMORY_PER_OUTPUT = 16


class TemplateLimitError(Exception):
    """A render went over one of its limits; the message names it and its setting."""


@dataclass(frozen=True)
class TemplateLimits:
    """The four settings, as the daemon hands them to a runner in its load frame."""

    timeout: float  # seconds a render may take (R1_TEMPLATE_TIMEOUT)
    max_loops: int  # loop iterations and calls of one render (R1_TEMPLATE_MAX_LOOPS)
    max_output: int  # characters of the prompt, and of any one value a template builds (R1_TEMPLATE_MAX_OUTPUT)
    max_bytes: int  # UTF-8 bytes of the template itself (R1_TEMPLATE_MAX_BYTES)

    @classmethod
    @functools.cache
    def defaults(cls) -> TemplateLimits:
        """The settings' defaults, for a runner started without limits (tests start runners directly)."""
        def default(key: str) -> str:
            return SETTINGS[key].default

        return cls(timeout=parse_duration(default("template_timeout"), "R1_TEMPLATE_TIMEOUT"),
                   max_loops=int(default("template_max_loops")),
                   max_output=parse_size(default("template_max_output"), "R1_TEMPLATE_MAX_OUTPUT"),
                   max_bytes=parse_size(default("template_max_bytes"), "R1_TEMPLATE_MAX_BYTES"))

    @classmethod
    def from_settings(cls, settings: Settings) -> TemplateLimits:
        return cls(timeout=settings.template_timeout, max_loops=settings.template_max_loops,
                   max_output=settings.template_max_output, max_bytes=settings.template_max_bytes)

    @classmethod
    def from_frame(cls, fields: dict[str, Any] | None) -> TemplateLimits:
        return cls(**{**asdict(cls.defaults()), **(fields or {})})

    def to_frame(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def memory(self) -> int:
        """Bytes of address space a renderer may add to what it holds once started."""
        return MEMORY_BASE + MEMORY_PER_OUTPUT * self.max_output

    def check_source(self, source: str) -> None:
        """Before anything else is done with a template: its size."""
        if len(source) > self.max_bytes or len(source.encode()) > self.max_bytes:
            raise TemplateLimitError(too_big(len(source.encode()), self.max_bytes))


def too_big(size: int, limit: int) -> str:
    return (f"the chat template is {size:,} bytes, more than the {limit:,} that R1_TEMPLATE_MAX_BYTES allows; "
            "real chat templates are a few kilobytes")


class RenderBudget:
    """What one render has spent; each charge raises TemplateLimitError once a limit is passed."""

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout
        self.steps = 0  # loop iterations and calls
        self.written = 0  # characters of output

    def step(self) -> None:
        """One loop iteration or call."""
        self.steps += 1
        if self.steps > self.limits.max_loops:
            raise TemplateLimitError(f"the chat template ran more than {self.limits.max_loops:,} loop iterations "
                                     "and calls (R1_TEMPLATE_MAX_LOOPS)")
        self.check_time()

    def check_loops(self, count: int, what: str) -> None:
        """A loop of `count` iterations is about to start: refused now if it cannot finish within the limit."""
        if self.steps + count > self.limits.max_loops:
            raise TemplateLimitError(f"the chat template's {what} would run more than {self.limits.max_loops:,} loop "
                                     "iterations and calls (R1_TEMPLATE_MAX_LOOPS)")

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(timed_out(self.limits.timeout))

    def check_size(self, size: int, what: str) -> None:
        """A value of `size` characters (or items) is about to be built by `what`."""
        if size > self.limits.max_output:
            raise TemplateLimitError(f"the chat template would build a value of {size:,} characters with {what}, "
                                     f"more than the {self.limits.max_output:,} of R1_TEMPLATE_MAX_OUTPUT")

    def write(self, size: int) -> None:
        """`size` more characters of the prompt."""
        self.written += size
        if self.written > self.limits.max_output:
            raise TemplateLimitError(f"the chat template wrote more than {self.limits.max_output:,} characters "
                                     "(R1_TEMPLATE_MAX_OUTPUT)")


def timed_out(seconds: float) -> str:
    return f"the chat template ran longer than {seconds:g} s (R1_TEMPLATE_TIMEOUT)"


_current: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar("r1_render_budget", default=None)


def current() -> RenderBudget:
    """The budget of the render under way; outside one (a template compiled or a Go helper called on
    its own), a fresh budget with the default limits, so that nothing runs unbounded."""
    return _current.get() or RenderBudget(TemplateLimits.defaults())


@contextlib.contextmanager
def charged_to(budget: RenderBudget) -> Iterator[RenderBudget]:
    """Everything rendered or compiled inside charges `budget`."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)
