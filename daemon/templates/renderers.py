"""A runner's renderers: the child processes (renderer.py) its chat templates render in.

A runner keeps at most two: one does the work, and a spare starts when it is busy, so one slow or
hostile template does not hold up the prompts of other clients. A renderer that has not answered by
R1_TEMPLATE_TIMEOUT plus a grace is killed and its request answered 400; a fresh one takes its place.
Renderers are started (fork and exec, safe beside llama.cpp's threads) from threads that live as long
as the runner, because the kernel's parent-death signal follows the thread that started a child.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any

from ..backends.base import BackendError
from ..child_process import how_it_ended
from ..template_limits import TemplateLimits, timed_out

GRACE = 1.0  # seconds past R1_TEMPLATE_TIMEOUT before a renderer that has not answered is killed
START_TIMEOUT = 30.0  # seconds a new renderer may take to import what it needs
MOST = 2


class RendererGone(Exception):
    """The renderer process ended; the message says how."""


class Renderer:
    """One renderer process, asked one render at a time."""

    def __init__(self, limits: TemplateLimits) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "r1.daemon.templates.renderer", json.dumps(limits.to_frame())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # its stderr is the runner's: the daemon logs it
        self._unread = bytearray()
        self._ready = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def ask(self, job: dict[str, Any], wait: float) -> dict[str, Any]:
        """Its answer to `job`; TimeoutError after `wait` seconds, RendererGone if it ended."""
        if not self._ready:
            try:
                self._ready = self._read(START_TIMEOUT).get("ready", False)
            except TimeoutError:
                raise RendererGone(f"did not start in {START_TIMEOUT:g} s") from None
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(job, ensure_ascii=False).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ConnectionResetError):
            raise RendererGone(self._ended()) from None
        return self._read(wait)

    def _read(self, wait: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()  # read raw: nothing else reads this pipe
        deadline = time.monotonic() + wait
        while b"\n" not in self._unread:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise RendererGone(self._ended())
            self._unread += chunk
        line, _, rest = self._unread.partition(b"\n")
        self._unread = bytearray(rest)
        return json.loads(line)

    def _ended(self) -> str:
        try:
            return how_it_ended(self.process.wait(1.0))
        except subprocess.TimeoutExpired:
            return "stopped answering"

    def stop(self) -> None:
        if self.alive:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


class Renderers:
    """The runner's renderers, shared by its prepare threads."""

    def __init__(self, limits: TemplateLimits, most: int = MOST) -> None:
        self.limits = limits
        self.most = most
        self._idle: list[Renderer] = []
        self._count = 0
        self._changed = threading.Condition()

    def warm(self) -> None:
        """Start the first renderer now (it imports while the model loads), not at the first chat."""
        with self._changed:
            if not self._count:
                self._idle.append(Renderer(self.limits))
                self._count = 1

    def render(self, source: str, messages: list[dict[str, Any]], **fields: Any) -> str:
        """template.render(source, messages, **fields) in a renderer; BackendError (a 400) says why not."""
        renderer = self._take()
        spent = True
        try:
            reply = renderer.ask({"source": source, "messages": messages, **fields}, self.limits.timeout + GRACE)
            spent = reply.get("spent", False)
        except TimeoutError:
            raise BackendError(timed_out(self.limits.timeout)) from None
        except RendererGone as exc:
            raise BackendError(f"the chat template's renderer {exc} while rendering; the request was not run") from None
        finally:
            self._give_back(renderer, spent)
        if "error" in reply:
            raise BackendError(reply["error"])
        return str(reply["text"])

    def _take(self) -> Renderer:
        with self._changed:
            while True:
                while self._idle:
                    renderer = self._idle.pop()  # the last one back: the spare stays spare while one suffices
                    if renderer.alive:
                        self._start_spare()
                        return renderer
                    renderer.stop()
                    self._count -= 1
                if self._count < self.most:
                    self._count += 1
                    self._start_spare()
                    return Renderer(self.limits)
                self._changed.wait()

    def _start_spare(self) -> None:
        """While every renderer is busy, one more starts (it imports meanwhile), up to the most."""
        if not self._idle and self._count < self.most:
            self._idle.append(Renderer(self.limits))
            self._count += 1

    def _give_back(self, renderer: Renderer, spent: bool) -> None:
        """A renderer that answered goes back; one that overran, died or spent itself is replaced now."""
        if spent or not renderer.alive:
            renderer.stop()
            renderer = Renderer(self.limits)
        with self._changed:
            self._idle.append(renderer)
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            for renderer in self._idle:
                renderer.stop()
            self._idle.clear()
