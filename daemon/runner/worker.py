"""The runner process: one backend, one model, driven by frames from the daemon.

The main thread reads frames; a single worker thread runs the model (llama.cpp and MLX
contexts are not thread-safe), so `health`, `ping` and `cancel` are answered while a
generation runs. With a batching backend that thread is an engine loop: generate requests join
the batch as they arrive and advance together one step at a time, while embeddings and tokenize
requests are answered between steps. A request for log probabilities (which the batch does not
give) waits for the batch to drain and runs alone; later requests wait behind it, in order. When the daemon goes away its end of the socket closes, the read returns nothing,
and the process exits at once, mid-generation or not: a runner never outlives its daemon.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import sys
import threading
import time
from pathlib import Path
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..backends import Backend, BackendError, load_backend
from ..backends.base import BatchBackend
from ..reasoning import template_opens_think
from . import template
from .budget import CLOSING, ThinkBudget
from .protocol import MAX_FRAME, Frame, decode, encode
from .stops import StopMatcher

log = logging.getLogger("r1.runner")


@dataclass
class Request:
    """One generation in the batch: what the runner applies on top of the backend's tokens."""
    frame: Frame
    prompt: str
    tokens: list[int]
    limit: int
    stops: StopMatcher
    cached: int = 0  # prompt tokens its slot held evaluated already; prompt_eval_count leaves them out
    started: int = field(default_factory=time.perf_counter_ns)
    first: int = 0
    last: int = 0
    count: int = 0
    announced: bool = False  # whether its start frame went out
    written: list[str] = field(default_factory=list)  # the answer, for Ollama's `context`
    logprobs: list[dict[str, Any]] = field(default_factory=list)  # of tokens whose text the stop matcher holds
    budget: ThinkBudget | None = None  # tokens it may think before the runner closes the block


class Worker:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.backend: Backend | None = None
        self.jobs: queue.Queue[Frame] = queue.Queue()
        self.cancelled: set[int] = set()
        self._send_lock = threading.Lock()

    def send(self, frame: Frame) -> None:
        data = encode(frame)
        with self._send_lock:
            self.sock.sendall(data)

    # The reading side (main thread)

    def serve(self) -> None:
        threading.Thread(target=self._work, name="model", daemon=True).start()
        reader = self.sock.makefile("rb")
        while line := reader.readline(MAX_FRAME):
            frame = decode(line)
            op = frame.get("op")
            if op == "cancel":
                self.cancelled.add(frame["target"])
            elif op == "ping":  # answered here, not by the model thread: proof of life, however busy
                self.send({"id": frame["id"], "result": {}})
            elif op == "health":
                self.send({"id": frame["id"], "result": self._health()})
            else:
                self.jobs.put(frame)
        log.debug("the daemon closed the connection; exiting")

    def _health(self) -> dict[str, Any]:
        rss = 0
        try:
            import psutil  # imported here: a runner that is never asked does not pay for it

            rss = psutil.Process().memory_info().rss
        except Exception:  # psutil missing or /proc unreadable: report what is known
            pass
        if self.backend is None:
            return {"pid": os.getpid(), "rss": rss}
        return {"pid": os.getpid(), "rss": rss, "unaccounted": self.backend.unaccounted_memory(), **self.backend.memory()}

    # The model side (worker thread)

    def _work(self) -> None:
        active: dict[int, Request] = {}  # generations in the batch, by request id
        held: deque[Frame] = deque()  # generate requests waiting behind one that must run alone
        while True:
            busy = isinstance(self.backend, BatchBackend) and self.backend.busy
            if held and not busy:
                self._dispatch(held.popleft(), active, held, from_held=True)
            else:
                # While the batch runs, new requests are taken between its steps: all that arrived, so that
                # prompts sent together are evaluated together, and none waits a step per request ahead of it.
                try:
                    frame = self.jobs.get(block=not busy)
                    while True:
                        self._dispatch(frame, active, held, from_held=False)
                        frame = self.jobs.get_nowait()
                except queue.Empty:
                    pass
            if active:
                self._advance(active)

    def _dispatch(self, frame: Frame, active: dict[int, Request], held: deque[Frame], from_held: bool) -> None:
        handlers = {"load": self._load, "generate": self._generate, "embed": self._embed, "tokenize": self._tokenize}
        handler = handlers.get(frame.get("op", ""))
        backend = self.backend
        if frame.get("op") == "generate" and isinstance(backend, BatchBackend):
            alone = frame.get("logprobs") is not None
            if not from_held and (held or (alone and backend.busy)):
                held.append(frame)
                return
            if not alone:
                handler = lambda f: self._join(f, backend, active)  # noqa: E731
        rid = frame["id"]
        try:
            if handler is None:
                raise BackendError(f"unknown runner op {frame.get('op')!r}")
            handler(frame)
        except BackendError as exc:
            self.send({"id": rid, "error": str(exc), "status": 400})
        except Exception as exc:
            log.exception("runner failed on %s", frame.get("op"))
            self.send({"id": rid, "error": f"the model runner failed: {type(exc).__name__}: {exc}", "status": 500})
        finally:
            if rid not in active:
                self.cancelled.discard(rid)

    def _model(self) -> Backend:
        if self.backend is None:
            raise BackendError("no model is loaded in this runner")
        return self.backend

    def _load(self, frame: Frame) -> None:
        started = time.perf_counter()
        self.backend = load_backend(frame["format"])(Path(frame["path"]), frame.get("load", {}))
        self.send({"id": frame["id"], "result": {
            "load_duration": int((time.perf_counter() - started) * 1e9),
            "context_length": self.backend.context_length,
            "chat_template": self.backend.chat_template is not None,
            "gpu": self.backend.on_gpu,
            "extra_buffers": self.backend.extra_buffers,
            "threads": self.backend.threads,
            "slots": self.backend.slots if isinstance(self.backend, BatchBackend) else 1,
            **self._health(),
        }})

    def _prompt(self, frame: Frame, backend: Backend) -> str:
        source = frame.get("template") or backend.chat_template
        if "messages" in frame:
            if not source:
                raise BackendError("this model has no chat template; give it one with `r1 create` and a TEMPLATE line, or use /api/generate")
            return template.render(source, frame["messages"], bos_token=backend.bos_token, eos_token=backend.eos_token,
                                   tools=frame.get("tools"), think=frame.get("think"),
                                   effort=frame.get("reasoning_effort"))
        system, prompt = frame.get("system"), frame.get("prompt", "")
        if frame.get("raw"):
            return prompt
        # Ollama's `context`: the earlier prompt and answer, as text, before this turn's prompt.
        earlier = backend.detokenize(frame["context"]) if frame.get("context") else ""
        if not source:
            return earlier + (f"{system}\n\n{prompt}" if system else prompt)
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        return earlier + template.render(source, messages, bos_token=backend.bos_token, eos_token=backend.eos_token,
                                         think=frame.get("think"), effort=frame.get("reasoning_effort"),
                                         suffix=frame.get("suffix"))

    def _fit(self, frame: Frame, backend: Backend, context: int) -> tuple[str, list[int]]:
        """The prompt and its tokens; a chat too long for the context loses its oldest turns,
        as in Ollama: system messages and the last message stay."""
        if frame.get("fill") == "tokens":  # fill in the middle with the model's own FIM tokens, no template
            tokens = backend.fill_in_middle(frame.get("prompt", ""), frame["suffix"])
            return backend.detokenize(tokens), tokens
        prompt = self._prompt(frame, backend)
        tokens = backend.tokenize(prompt)
        messages = frame.get("messages")
        dropped = 0
        while messages and len(tokens) >= context:
            droppable = [i for i, m in enumerate(messages[:-1]) if m.get("role") != "system"]
            if not droppable:
                break
            messages = messages[: droppable[0]] + messages[droppable[0] + 1:]
            dropped += 1
            prompt = self._prompt({**frame, "messages": messages}, backend)
            tokens = backend.tokenize(prompt)
        if dropped:
            log.info("dropped the %d oldest messages of a chat to fit the context of %d tokens", dropped, context)
        return prompt, tokens

    def _prepare(self, frame: Frame, backend: Backend) -> Request:
        context = self._context(frame, backend)
        prompt, tokens = self._fit(frame, backend, context)
        room = context - len(tokens)
        if room <= 0:
            raise BackendError(
                f"the prompt is {len(tokens)} tokens, which fills the model's context of {context}; "
                "shorten it or raise the num_ctx option"
            )
        sampling = frame.get("sampling", {})
        limit = sampling.get("num_predict", -1)
        limit = room if limit is None or limit < 0 else min(limit, room)
        budget = frame.get("think_budget")
        return Request(frame, prompt, tokens, limit, StopMatcher(sampling.get("stop") or []),
                       budget=None if budget is None else ThinkBudget(budget, opened=template_opens_think(prompt)))

    def _start(self, request: Request) -> None:
        request.announced = True
        self.send({"id": request.frame["id"], "start": {"opened_think": template_opens_think(request.prompt)}})

    def _generate(self, frame: Frame) -> None:
        """One generation alone, through the backend's stream()."""
        backend = self._model()
        request = self._prepare(frame, backend)
        rid = frame["id"]
        self._start(request)
        top = frame.get("logprobs")  # alternatives per token, when log probabilities were asked for
        reason = "stop"
        if request.limit == 0:
            reason = "length"
        else:
            for text in backend.stream(request.tokens, frame.get("sampling", {}), frame.get("format")):
                if rid in self.cancelled:
                    reason = "cancel"
                    break
                if top is not None:
                    request.logprobs.append(backend.logprobs(top))
                reason = self._token(request, text) or reason
                if request.stops.stopped or reason == "length":
                    break
        self._finish(request, reason, backend)

    def _join(self, frame: Frame, backend: BatchBackend, active: dict[int, Request]) -> None:
        """A generation joins the batch; _advance carries it on."""
        request = self._prepare(frame, backend)
        if request.limit == 0:
            self._start(request)
            self._finish(request, "length", backend)
            return
        backend.add(frame["id"], request.tokens, frame.get("sampling", {}), frame.get("format"))
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

    @staticmethod
    def _context(frame: Frame, backend: Backend) -> int:
        """A runner loaded with a larger context may serve a request that asked for a smaller one."""
        return min(backend.context_length, frame.get("num_ctx") or backend.context_length)

    def _embed(self, frame: Frame) -> None:
        backend = self._model()
        started = time.perf_counter_ns()
        vectors, count = backend.embed(frame["input"], frame.get("truncate", True), self._context(frame, backend))
        self.send({"id": frame["id"], "result": {
            "embeddings": vectors, "prompt_eval_count": count, "duration": time.perf_counter_ns() - started,
        }})

    def _tokenize(self, frame: Frame) -> None:
        """A text's tokens; without one, those of the prompt a generate frame would render."""
        backend = self._model()
        text = frame["text"] if "text" in frame else self._prompt(frame, backend)
        self.send({"id": frame["id"], "result": {"tokens": backend.tokenize(text)}})


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when the daemon dies, even while a C call blocks."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _arg(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def main(argv: list[str]) -> int:
    """`--fd N --log-level LEVEL`: the daemon's end of the socket, and the daemon's own log level."""
    logging.basicConfig(level=_arg(argv, "--log-level"), stream=sys.stderr,
                        format="runner %(process)d %(levelname)s %(message)s")
    _die_with_parent()
    fd = int(_arg(argv, "--fd"))
    sock = socket.socket(fileno=fd)
    try:
        Worker(sock).serve()
    except (BrokenPipeError, ConnectionResetError):
        pass
    # Skip interpreter teardown: the model's memory goes back with the process, and a
    # generation still running in the worker thread must not keep it alive.
    sys.stderr.flush()
    os._exit(0)
