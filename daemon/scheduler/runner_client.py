"""The daemon's side of a runner: start the process, send frames, route answers by request id.

asyncio only; the daemon never imports a backend. A runner that dies turns every request
waiting on it into RunnerDied, with the last lines it wrote to stderr, so the user sees why.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..child_process import how_it_ended
from ..errors import R1Error
from ..runner.protocol import MAX_FRAME, Frame, decode, encode

log = logging.getLogger(__name__)

STOP_GRACE = 5.0  # seconds a runner gets to exit after its socket closes, before SIGKILL
# Calls that wait their turn in the runner (behind generations): a caller that stops waiting cancels them,
# and the runner drops those it has not started.
MODEL_WORK = frozenset({"embed", "rerank", "tokenize"})


class RunnerError(R1Error):
    """The runner answered a request with an error; the status is the runner's verdict."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


class RunnerDied(RunnerError):
    """The runner process ended; `death` says how ("was killed by SIGSEGV (its last words)")."""

    def __init__(self, message: str, death: str, returncode: int | None) -> None:
        super().__init__(message)
        self.death = death
        self.returncode = returncode  # negative: the signal that killed it


_DIED = object()  # queued for every waiting request when the runner's socket closes


class Runner:
    def __init__(self, label: str, process: asyncio.subprocess.Process,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.label = label
        self.process = process
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Queue[Any]] = {}
        self._last_words: collections.deque[str] = collections.deque(maxlen=12)
        self._death: str | None = None
        self._stopping = False  # set by stop(): an exit then is the plan, not news
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # set once the process is gone
        self._tasks: list[asyncio.Task] = []
        self._confirming: set[asyncio.Task] = set()  # waits for the runner to confirm a cancelled generation
        self.info: dict[str, Any] = {}

    @classmethod
    async def start(cls, label: str, fmt: str, path: Path, load: dict[str, Any], log_level: str,
                    templates: dict[str, Any] | None = None) -> Runner:
        """Start a runner that logs at `log_level` and load the model in it; RunnerError if it cannot.
        `templates`: the limits its chat templates render within (template_limits.py), else the defaults."""
        parent, child = socket.socketpair()
        out_read, out_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "r1.daemon.runner", "--fd", str(child.fileno()), "--log-level", log_level,
                pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL, stdout=out_write, stderr=out_write,
            )
        finally:
            child.close()
            os.close(out_write)
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=MAX_FRAME)
        runner = cls(label, process, reader, writer)
        runner._tasks = [asyncio.ensure_future(runner._route()), asyncio.ensure_future(runner._log_output(out_read))]
        try:
            runner.info = await runner.call("load", format=fmt, path=str(path), load=load, templates=templates)
        except BaseException:
            await runner.stop()
            raise
        threads = runner.info.get("threads")
        log.info("runner %d loaded %s in %.2f s%s", process.pid, label, runner.info["load_duration"] / 1e9,
                 f" (threads: {threads[0]} for tokens, {threads[1]} for prompts)" if threads else "")
        return runner

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self._death is None and self.process.returncode is None

    async def _log_output(self, fd: int) -> None:
        """The runner's stderr and stdout (llama.cpp writes to both) go to the daemon's log."""
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=MAX_FRAME)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(fd, "rb"))
        try:
            while line := await stream.readline():
                text = line.decode(errors="replace").rstrip()
                if text:
                    self._last_words.append(text)
                    log.debug("runner %d: %s", self.process.pid, text)
        finally:
            transport.close()

    async def _route(self) -> None:
        try:
            while line := await self._reader.readline():
                frame = decode(line)
                queue = self._waiting.get(frame["id"])
                if queue is not None:
                    queue.put_nowait(frame)
        except (ValueError, ConnectionError, asyncio.LimitOverrunError) as exc:
            log.error("runner %d sent something unreadable: %s", self.process.pid, exc)
        code = await self.process.wait()
        self._death = self._describe_exit(code)
        self._mark_exited()
        if self._waiting:  # someone was waiting for an answer
            # A death while loading is the scheduler's to tell: it may load again without extra buffers.
            level = log.info if self._stopping else log.error if self.info else log.warning
            level("runner for %s %s", self.label, self._death)
        for queue in self._waiting.values():
            queue.put_nowait(_DIED)

    def _describe_exit(self, code: int) -> str:
        words = " | ".join(list(self._last_words)[-3:])
        return how_it_ended(code) + (f" ({words})" if words else "")

    def _died(self) -> RunnerDied:
        how = f": {self._death}" if self._death else ""
        return RunnerDied(f"the model runner for {self.label} stopped{how}; the next request starts a new one",
                          self._death or "exited", self.process.returncode)

    @property
    def death(self) -> str | None:
        """How the runner ended, once the daemon has seen it end."""
        return self._death

    async def _send(self, frame: Frame) -> None:
        if not self.alive:
            raise self._died()
        self._writer.write(encode(frame))
        try:
            await self._writer.drain()
        except ConnectionError:
            # The runner's end closed under us: it is dying. Wait to say how.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), STOP_GRACE)
            raise self._died() from None

    async def _next(self, queue: asyncio.Queue[Any]) -> Frame:
        frame = await queue.get()
        if frame is _DIED:
            raise self._died()
        if "error" in frame:
            raise RunnerError(frame["error"], frame.get("status", 500))
        return frame

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """One request, one answer. A caller that stops waiting for model work (an embedding, a rerank, a count of
        tokens) cancels it, so that the runner can drop it; its late answer is ignored."""
        rid = next(self._ids)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting[rid] = queue
        try:
            await self._send({"id": rid, "op": op, **fields})
            return (await self._next(queue))["result"]
        except asyncio.CancelledError:
            if op in MODEL_WORK:
                self._ask_cancel(rid)
            raise
        finally:
            del self._waiting[rid]

    async def generate(self, request: dict[str, Any]) -> AsyncIterator[Frame]:
        """The start frame, the text frames, then the done frame. Leaving early cancels the generation."""
        rid = next(self._ids)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting[rid] = queue
        finished = False
        try:
            await self._send({"id": rid, "op": "generate", **request})
            while True:
                frame = await self._next(queue)
                finished = "done" in frame
                yield frame
                if finished:
                    return
        finally:
            if finished or not self.alive:
                del self._waiting[rid]
            else:
                # The client left: the cancel frame goes out now, and the id is forgotten once the runner confirms.
                self._ask_cancel(rid)
                confirmed = asyncio.ensure_future(self._confirmed(rid, queue, time.perf_counter()))
                self._confirming.add(confirmed)  # held, so that it is not collected before it ends
                confirmed.add_done_callback(self._confirming.discard)

    def _ask_cancel(self, rid: int) -> None:
        """Ask the runner to drop request `rid`: written before this returns, not when the loop gets to it."""
        if self.alive and not self._writer.is_closing():
            self._writer.write(encode({"id": next(self._ids), "op": "cancel", "target": rid}))

    async def _confirmed(self, rid: int, queue: asyncio.Queue[Any], asked: float) -> None:
        try:
            while True:
                frame = await queue.get()
                if frame is _DIED or "done" in frame or "error" in frame:
                    break
            log.debug("generation %d on %s cancelled: its client went away (stopped %.2f s after asked)",
                      rid, self.label, time.perf_counter() - asked)
        finally:
            self._waiting.pop(rid, None)

    async def stop(self) -> None:
        """Close the socket (the runner exits when it sees that), then make sure it is gone."""
        self._stopping = True
        self._writer.close()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_GRACE)
        except TimeoutError:
            log.warning("runner %d did not exit in %.0f s; killing it", self.process.pid, STOP_GRACE)
            self.process.kill()
            await self.process.wait()
        except asyncio.CancelledError:
            if self.process.returncode is None:  # whoever stopped waiting, the process must still go
                self.process.kill()
            raise
        # With the process gone both pipes reach EOF, so the reading tasks end on their own.
        await asyncio.wait(self._tasks, timeout=1.0)
        for task in self._tasks:
            task.cancel()
        self._mark_exited()

    def _mark_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)
