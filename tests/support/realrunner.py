"""A real GGUF runner started by the test itself (no daemon, no scheduler), and one generation read from it
frame by frame, noting each frame's arrival in a shared log: the order frames arrive in shows which
generations ran beside each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from r1.daemon.scheduler.runner_client import Runner
from tests.support.cores import own_runner_load

GREEDY = {"temperature": 0, "repeat_penalty": 1.0}  # the same answer each time, as far as llama.cpp's sums allow


async def start(path: Path, slots: int, num_ctx: int = 512) -> Runner:
    """A runner of `path` with `slots` slots of `num_ctx` tokens each, on this worker's share of the cores."""
    runner = await Runner.start(path.stem, "gguf", path, own_runner_load(num_ctx=num_ctx, num_parallel=slots), "INFO")
    assert runner.info["slots"] == slots and runner.info["context_length"] == num_ctx
    return runner


async def generate(runner: Runner, request: dict[str, Any], log: list[tuple[int, str]], name: int,
                   stop_after: int | None = None) -> tuple[list[str], dict[str, Any]]:
    """The text frames and the `done` of one generation, noting each frame in `log`; stops reading
    (which cancels it) after `stop_after` text frames."""
    pieces: list[str] = []
    async for frame in runner.generate(request):
        if "t" in frame:
            pieces.append(frame["t"])
            log.append((name, "t"))
            if stop_after is not None and len(pieces) >= stop_after:
                return pieces, {}
        elif "done" in frame:
            log.append((name, "done"))
            return pieces, frame["done"]
    raise AssertionError("the generation ended without a done frame")
