"""A context that fits the prompt: a request that did not set num_ctx (in its options or the model's
PARAMETERs) gets a runner whose context holds its prompt and room for an answer, rather than losing its
oldest messages or a 400.

Coding agents send 5-30K-token prompts (their instructions and 10-20 tools) to a model whose default
context is 4096 tokens (options/check.py). Such a request's prompt is counted by the runner it leased
first (the model's largest loaded one, or a new one with the default context); when it does not fit, the
request leases a runner with the smallest power of two of tokens that holds it, up to the model's trained
context and within the memory budget. The scheduler replaces the model's smaller runner with that one,
and a larger runner serves every later request whose own context is unset with its whole context.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from .model_spec import Lease, ModelSpec
from .scheduler import Scheduler

log = logging.getLogger(__name__)

ANSWER_ROOM = 2048  # tokens kept free for the answer when the context is grown (fewer if num_predict is less)


def answer_room(sampling: dict[str, Any]) -> int:
    limit = sampling.get("num_predict")
    return ANSWER_ROOM if limit is None or limit <= 0 else min(limit, ANSWER_ROOM)


def may_not_fit(frame: dict[str, Any], context: int) -> bool:
    """Whether the prompt could be too long for `context` tokens: it cannot when its text is under half of it
    in bytes (a token is at least a byte; the half leaves the template's own text room)."""
    text = json.dumps([frame.get(key) for key in ("messages", "tools", "prompt", "system", "suffix")])
    return len(text.encode()) + answer_room(frame.get("sampling", {})) > context // 2


def grown_context(tokens: int, room: int, trained: int, fits: Callable[[int], bool]) -> int | None:
    """The smallest power of two >= tokens + room, at most `trained`, or the largest such that `fits` the
    memory budget; None when no context larger than the prompt fits."""
    wanted = 1 << max(tokens + room - 1, 1).bit_length()
    context = min(wanted, trained)
    while context > tokens and not fits(context):
        context //= 2
    return context if context > tokens else None


@contextlib.asynccontextmanager
async def fitting_lease(scheduler: Scheduler, spec: ModelSpec, frame: dict[str, Any], keep_alive: float | None,
                        trained: int | None, respec: Callable[[int], ModelSpec]) -> AsyncIterator[Lease]:
    """A lease on a runner whose context holds the prompt of `frame` (whose num_ctx is unset); `respec`
    gives the model's spec for another num_ctx. Without a trained context to grow into, the first lease."""
    async with scheduler.lease(spec, keep_alive) as lease:
        context = lease.num_ctx
        tokens = 0
        if trained and trained > context and may_not_fit(frame, context):
            tokens = len((await lease.runner.call("tokenize", **frame))["tokens"])
        room = answer_room(frame.get("sampling", {}))
        if tokens + room <= context:
            yield lease
            return
    grown = grown_context(tokens, room, trained or context, lambda n: respec(n).estimate <= scheduler.budget)
    if grown is None or grown <= context:
        async with scheduler.lease(spec, keep_alive) as lease:  # as before: the runner drops old messages
            yield lease
        return
    log.info("%s: the prompt is %d tokens, more than its context of %d holds with room for an answer; "
             "growing the context to %d", spec.name, tokens, context, grown)
    async with scheduler.lease(respec(grown), keep_alive) as lease:
        yield lease
