"""The runner process: one backend, one model, driven by frames from the daemon.

The main thread reads frames; a single model thread runs the model (llama.cpp and MLX
contexts are not thread-safe), so `health`, `ping` and `cancel` are answered while a
generation runs. Generate and tokenize requests are prepared first on two prepare threads
(prepare.py: the chat template, rendered in a renderer process, and the tokens), so a slow or
hostile template never stalls the model. With a batching backend the model thread is an engine
loop: prepared requests join the batch as they arrive and advance together one step at a time,
while embeddings are answered between steps. A request for log probabilities (which the batch
does not give) waits for the batch to drain and runs alone; later requests wait behind it, in
order. A cancel for a request not yet started (being prepared, or waiting for the model) drops it
unrun and answers it. When the daemon goes away its end of the socket closes, the read returns
nothing, and the process exits at once, mid-generation or not: a runner never outlives its daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backends import Backend, BackendError, load_backend
from ..backends.base import BatchBackend, Cancelled
from ..backends.kv_files import finish_writes
from ..child_process import die_with_parent
from ..reasoning import template_opens_think
from ..template_limits import TemplateLimits
from ..templates.renderers import Renderers
from .budget import CLOSING
from .prepare import Preparer, Request, context_of
from .protocol import MAX_FRAME, Frame, decode, encode

log = logging.getLogger("r1.runner")

PREPARED = ("generate", "tokenize")  # ops that go through a prepare thread before (or instead of) the model
PREPARE_THREADS = 2  # as many as renderers: one hostile template holds up one thread, never the others
# What a generate dropped before it started reports: nothing evaluated, nothing generated.
UNRUN = {"done_reason": "cancel", "prompt_eval_count": 0, "prompt_cached": 0, "prompt_eval_duration": 0,
         "eval_count": 0, "eval_duration": 0}


class Worker:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.backend: Backend | None = None
        self.preparer: Preparer | None = None
        self.jobs: queue.Queue[Frame | Request] = queue.Queue()  # for the model thread
        self.to_prepare: queue.Queue[Frame] = queue.Queue()
        self.cancelled: set[int] = set()
        self.waiting: dict[int, Frame] = {}  # requests not yet with the model: a cancel answers them at once
        self._waiting_lock = threading.Lock()
        self._send_lock = threading.Lock()

    def send(self, frame: Frame) -> None:
        data = encode(frame)
        with self._send_lock:
            self.sock.sendall(data)

    # The reading side (main thread)

    def serve(self) -> None:
        threading.Thread(target=self._work, name="model", daemon=True).start()
        for n in range(PREPARE_THREADS):
            threading.Thread(target=self._prepare, name=f"prepare-{n}", daemon=True).start()
        reader = self.sock.makefile("rb")
        while line := reader.readline(MAX_FRAME):
            frame = decode(line)
            op = frame.get("op")
            if op == "cancel":
                self._cancel(frame["target"])
            elif op == "ping":  # answered here, not by the model thread: proof of life, however busy
                self.send({"id": frame["id"], "result": {}})
            elif op == "health":
                self.send({"id": frame["id"], "result": self._health()})
            else:
                with self._waiting_lock:
                    self.waiting[frame["id"]] = frame
                (self.to_prepare if op in PREPARED else self.jobs).put(frame)
        log.debug("the daemon closed the connection; exiting")

    def _cancel(self, target: int) -> None:
        with self._waiting_lock:
            frame = self.waiting.pop(target, None)
            if frame is None:  # with the model: it drops it between two steps
                self.cancelled.add(target)
                return
        self._drop(frame)

    def _claim(self, frame: Frame) -> bool:
        """Whether a request is still wanted, by the thread about to start on it."""
        with self._waiting_lock:
            return self.waiting.pop(frame["id"], None) is not None

    def _drop(self, frame: Frame) -> None:
        """A request cancelled before its work: a generate ends with done_reason cancel, others with an error."""
        rid = frame["id"]
        self.cancelled.discard(rid)
        if frame.get("op") == "generate":
            self.send({"id": rid, "start": {"opened_think": False}})
            self.send({"id": rid, "done": UNRUN})
        else:
            self.send({"id": rid, "error": "cancelled: its client went away", "status": 499})

    def _fail(self, rid: int, op: str, exc: Exception) -> None:
        self.cancelled.discard(rid)
        if isinstance(exc, BackendError):
            self.send({"id": rid, "error": str(exc), "status": 400})
        else:
            log.error("runner failed on %s", op, exc_info=exc)
            self.send({"id": rid, "error": f"the model runner failed: {type(exc).__name__}: {exc}", "status": 500})

    def _health(self) -> dict[str, Any]:
        rss = _resident_with_renderers()
        if self.backend is None:
            return {"pid": os.getpid(), "rss": rss}
        return {"pid": os.getpid(), "rss": rss, "unaccounted": self.backend.unaccounted_memory(), **self.backend.memory()}

    # The prepare side (two threads)

    def _prepare(self) -> None:
        """Render and tokenize requests, then hand generations to the model thread; tokenize requests end here.
        A request stays `waiting` while it is prepared: a cancel meanwhile answers it at once, and what its
        preparation gives is dropped."""
        while True:
            frame = self.to_prepare.get()
            if frame["id"] not in self.waiting:
                continue  # cancelled while it waited, and answered then
            try:
                preparer = self._preparer()
                prepared: Request | list[int] = (preparer.tokens(frame) if frame["op"] == "tokenize"
                                                 else preparer.request(frame))
            except Exception as exc:
                if self._claim(frame):
                    self._fail(frame["id"], frame["op"], exc)
                continue
            if not self._claim(frame):
                if isinstance(prepared, Request) and prepared.images is not None:
                    prepared.images.close()
                continue
            if isinstance(prepared, Request):
                self.jobs.put(prepared)
            else:
                self.send({"id": frame["id"], "result": {"tokens": prepared}})

    def _preparer(self) -> Preparer:
        if self.preparer is None:
            raise BackendError("no model is loaded in this runner")
        return self.preparer

    # The model side (model thread)

    def _work(self) -> None:
        active: dict[int, Request] = {}  # generations in the batch, by request id
        held: deque[Request] = deque()  # generations waiting behind one that must run alone
        while True:
            busy = isinstance(self.backend, BatchBackend) and self.backend.busy
            self._drop_held(held)
            if held and not busy:
                self._run(held.popleft(), active, held, from_held=True)
            else:
                # While the batch runs, new requests are taken between its steps: all that arrived, so that
                # prompts sent together are evaluated together, and none waits a step per request ahead of it.
                try:
                    job = self.jobs.get(block=not busy)
                    while True:
                        self._dispatch(job, active, held)
                        job = self.jobs.get_nowait()
                except queue.Empty:
                    pass
            if active:
                self._advance(active)

    def _dispatch(self, job: Frame | Request, active: dict[int, Request], held: deque[Request]) -> None:
        if isinstance(job, Request):
            self._run(job, active, held, from_held=False)
            return
        if not self._claim(job):
            return  # cancelled while it waited, and answered then
        handler = {"load": self._load, "embed": self._embed, "rerank": self._rerank}.get(job.get("op", ""))
        try:
            if handler is None:
                raise BackendError(f"unknown runner op {job.get('op')!r}")
            handler(job)
        except Cancelled:  # its client left mid-way: answered as if cancelled before it began
            self._drop(job)
        except Exception as exc:
            self._fail(job["id"], job.get("op", ""), exc)
        else:
            self.cancelled.discard(job["id"])

    def _run(self, request: Request, active: dict[int, Request], held: deque[Request], from_held: bool) -> None:
        """A prepared generation: into the batch, behind one that runs alone, or alone."""
        rid = request.frame["id"]
        backend = self._model()
        if rid in self.cancelled:
            self._finish(request, "cancel", backend)
            return
        run: Callable[[Request], None] = self._generate
        if isinstance(backend, BatchBackend):
            alone = request.frame.get("logprobs") is not None
            if not from_held and (held or (alone and backend.busy)):
                held.append(request)
                return
            if not alone:
                run = lambda r: self._join(r, backend, active)  # noqa: E731
        request.started = time.perf_counter_ns()  # its prompt's time starts now, not when it was prepared
        try:
            run(request)
        except Exception as exc:
            active.pop(rid, None)
            if request.images is not None:
                request.images.close()
            self._fail(rid, "generate", exc)
        finally:
            if rid not in active:
                self.cancelled.discard(rid)

    def _drop_held(self, held: deque[Request]) -> None:
        """Held generations whose clients left end now, not when their turn comes."""
        for request in [r for r in held if r.frame["id"] in self.cancelled]:
            held.remove(request)
            self._finish(request, "cancel", self._model())

    def _model(self) -> Backend:
        if self.backend is None:
            raise BackendError("no model is loaded in this runner")
        return self.backend

    def _load(self, frame: Frame) -> None:
        started = time.perf_counter()
        renderers = Renderers(TemplateLimits.from_frame(frame.get("templates")))
        renderers.warm()  # it imports while the model loads
        self.backend = load_backend(frame["format"])(Path(frame["path"]), frame.get("load", {}))
        self.preparer = Preparer(self.backend, renderers)
        self.send({"id": frame["id"], "result": {
            "load_duration": int((time.perf_counter() - started) * 1e9),
            "context_length": self.backend.context_length,
            "chat_template": self.backend.chat_template is not None,
            "gpu": self.backend.on_gpu,
            "offload": self.backend.offload,
            "extra_buffers": self.backend.extra_buffers,
            "threads": self.backend.threads,
            "slots": self.backend.slots if isinstance(self.backend, BatchBackend) else 1,
            **self._health(),
        }})

    def _start(self, request: Request) -> None:
        request.announced = True
        self.send({"id": request.frame["id"], "start": {"opened_think": template_opens_think(request.prompt)}})

    def _generate(self, request: Request) -> None:
        """One generation alone, through the backend's stream()."""
        backend = self._model()
        frame = request.frame
        rid = frame["id"]
        self._start(request)
        top = frame.get("logprobs")  # alternatives per token, when log probabilities were asked for
        reason = "stop"
        if request.limit == 0:
            reason = "length"
        else:
            for text in backend.stream(request.tokens, frame.get("sampling", {}), frame.get("format"),
                                       **_images_of(request)):
                if rid in self.cancelled:
                    reason = "cancel"
                    break
                if top is not None:
                    request.logprobs.append(backend.logprobs(top))
                reason = self._token(request, text) or reason
                if request.stops.stopped or reason == "length":
                    break
        self._finish(request, reason, backend)

    def _join(self, request: Request, backend: BatchBackend, active: dict[int, Request]) -> None:
        """A generation joins the batch; _advance carries it on."""
        frame = request.frame
        if request.limit == 0:
            self._start(request)
            self._finish(request, "length", backend)
            return
        # A thinking budget closes the block right after the token that spends it: no tokens guessed past it.
        backend.add(frame["id"], request.tokens, frame.get("sampling", {}), frame.get("format"),
                    draft=request.budget is None, **_images_of(request))
        active[frame["id"]] = request  # its start frame goes out with its first token, once its slot is known

    def _advance(self, active: dict[int, Request]) -> None:
        """One batch step, and what it means for each request in it."""
        backend = self.backend
        assert isinstance(backend, BatchBackend)
        for rid in [rid for rid in active if rid in self.cancelled]:
            backend.cancel(rid)
            self._finish(active.pop(rid), "cancel", backend)
        if not active:
            return
        try:
            events = backend.step()
        except Exception as exc:  # the batch as a whole failed: every request in it gets the error
            log.exception("a batch step failed")
            status = 400 if isinstance(exc, BackendError) else 500
            for rid in list(active):
                backend.cancel(rid)
                del active[rid]
                self.cancelled.discard(rid)
                self.send({"id": rid, "error": f"the model runner failed: {exc}", "status": status})
            return
        for rid, text, ended in events:
            request = active.get(rid)
            if request is None:
                continue
            if not request.announced:
                request.cached = backend.reused(rid)
                self._start(request)
            if ended:
                self._write(request, request.stops.feed(text))
                self._finish(active.pop(rid), "stop", backend)
                continue
            reason = self._token(request, text)
            if request.budget is not None and request.budget.spent(text):
                backend.force(rid, CLOSING)  # the answer starts now; where the backend cannot, it thinks on
            if request.stops.stopped or reason == "length":
                backend.cancel(rid)
                self._finish(active.pop(rid), reason or "stop", backend)

    def _token(self, request: Request, text: str) -> str | None:
        """Counts a token and sends what the stop matcher lets out; "length" once the limit is reached."""
        request.last = time.perf_counter_ns()
        if request.count == 0:
            request.first = request.last
        request.count += 1
        self._write(request, request.stops.feed(text))
        return "length" if request.count >= request.limit and not request.stops.stopped else None

    def _finish(self, request: Request, reason: str, backend: Backend) -> None:
        rid = request.frame["id"]
        if request.images is not None:  # its images' data, whether or not the batch took them (closing twice is fine)
            request.images.close()
        if not request.announced:  # cancelled before its first token
            self._start(request)
        self._write(request, request.stops.finish())  # text held back for a stop string that never came
        first = request.first or request.started
        done = {
            "done_reason": reason,
            # As Ollama counts: the tokens evaluated, not those a slot held from an earlier turn.
            "prompt_eval_count": len(request.tokens) - request.cached,
            "prompt_cached": request.cached,
            # The first token's time is the prompt's: llama.cpp evaluates the prompt, then samples.
            "prompt_eval_duration": first - request.started,
            "eval_count": request.count,
            "eval_duration": (request.last or first) - first,
        }
        if isinstance(backend, BatchBackend):  # r1's additions: speculative decoding's drafts and those kept
            done["draft_tokens"], done["draft_accepted"] = backend.drafts(rid)
        frame = request.frame
        if "prompt" in frame and not frame.get("raw"):  # /api/generate returns the whole exchange as tokens
            done["context"] = backend.tokenize(request.prompt + "".join(request.written))
        self.cancelled.discard(rid)
        self.send({"id": rid, "done": done})

    def _write(self, request: Request, text: str) -> None:
        """Answer text the stop matcher let out: kept for Ollama's `context`, and sent."""
        if text:
            request.written.append(text)
            self._send_text(request.frame["id"], text, request.logprobs)

    def _send_text(self, rid: int, text: str, logprobs: list[dict[str, Any]]) -> None:
        """Text for the daemon, with the log probabilities of the tokens it came from."""
        frame: Frame = {"id": rid, "t": text}
        if logprobs:
            frame["lp"] = logprobs[:]
            logprobs.clear()
        self.send(frame)

    def _embed(self, frame: Frame) -> None:
        backend = self._model()
        started = time.perf_counter_ns()
        rid = frame["id"]
        vectors, count = backend.embed(frame["input"], frame.get("truncate", True), context_of(frame, backend),
                                       stop=lambda: rid in self.cancelled)
        self.send({"id": rid, "result": {
            "embeddings": vectors, "prompt_eval_count": count, "duration": time.perf_counter_ns() - started,
        }})

    def _rerank(self, frame: Frame) -> None:
        started = time.perf_counter_ns()
        rid = frame["id"]
        scores, count = self._model().rerank(frame["query"], frame["documents"], frame.get("truncate", True),
                                             context_of(frame, self._model()), stop=lambda: rid in self.cancelled)
        self.send({"id": rid, "result": {
            "scores": scores, "prompt_eval_count": count, "duration": time.perf_counter_ns() - started,
        }})


def _images_of(request: Request) -> dict[str, Any]:
    """The keyword that gives a backend the request's images, if it has any (only GGUF backends take it)."""
    return {"images": request.images} if request.images is not None else {}


def _arg(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _resident_with_renderers() -> int:
    """The runner's resident size and its template renderers' (its only children): the memory it costs."""
    try:
        import psutil  # imported here: a runner that is never asked does not pay for it

        process = psutil.Process()
        rss = process.memory_info().rss
        children = process.children()
    except Exception:  # psutil missing or /proc unreadable: report what is known
        return 0
    for child in children:
        with contextlib.suppress(psutil.Error):  # a renderer replaced meanwhile
            rss += child.memory_info().rss
    return rss


def main(argv: list[str]) -> int:
    """`--fd N --log-level LEVEL`: the daemon's end of the socket, and the daemon's own log level."""
    logging.basicConfig(level=_arg(argv, "--log-level"), stream=sys.stderr,
                        format="runner %(process)d %(levelname)s %(message)s")
    die_with_parent()
    fd = int(_arg(argv, "--fd"))
    sock = socket.socket(fileno=fd)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        Worker(sock).serve()
    finish_writes()  # the prompt cache files queued so far reach the disk
    # Skip interpreter teardown: the model's memory goes back with the process, and a
    # generation still running in the worker thread must not keep it alive.
    sys.stderr.flush()
    os._exit(0)
