"""The runner process: one backend, one model, driven by frames from the daemon.

The main thread reads frames; a single worker thread runs the model (llama.cpp and MLX
contexts are not thread-safe), so `health`, `ping` and `cancel` are answered while a
generation runs. When the daemon goes away its end of the socket closes, the read returns nothing,
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
from typing import Any

from ..backends import Backend, BackendError, load_backend
from ..reasoning import template_opens_think
from . import template
from .protocol import MAX_FRAME, Frame, decode, encode
from .stops import StopMatcher

log = logging.getLogger("r1.runner")


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
        handlers = {"load": self._load, "generate": self._generate, "embed": self._embed, "tokenize": self._tokenize}
        while True:
            frame = self.jobs.get()
            rid = frame["id"]
            handler = handlers.get(frame.get("op", ""))
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
            **self._health(),
        }})

    def _prompt(self, frame: Frame, backend: Backend) -> str:
        source = frame.get("template") or backend.chat_template
        if "messages" in frame:
            if not source:
                raise BackendError("this model has no chat template; give it one with `r1 create` and a TEMPLATE line, or use /api/generate")
            return template.render(source, frame["messages"], bos_token=backend.bos_token, eos_token=backend.eos_token,
                                   tools=frame.get("tools"), think=frame.get("think"))
        system, prompt = frame.get("system"), frame.get("prompt", "")
        if frame.get("raw"):
            return prompt
        # Ollama's `context`: the earlier prompt and answer, as text, before this turn's prompt.
        earlier = backend.detokenize(frame["context"]) if frame.get("context") else ""
        if not source:
            return earlier + (f"{system}\n\n{prompt}" if system else prompt)
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        return earlier + template.render(source, messages, bos_token=backend.bos_token, eos_token=backend.eos_token,
                                         think=frame.get("think"), suffix=frame.get("suffix"))

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

    def _generate(self, frame: Frame) -> None:
        rid = frame["id"]
        backend = self._model()
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
        self.send({"id": rid, "start": {"prompt_eval_count": len(tokens), "opened_think": template_opens_think(prompt)}})
        stops = StopMatcher(sampling.get("stop") or [])
        top = frame.get("logprobs")  # alternatives per token, when log probabilities were asked for
        held: list[dict[str, Any]] = []  # those of tokens whose text the stop matcher still holds
        started = time.perf_counter_ns()
        first = last = started
        count = 0
        reason = "stop"
        written: list[str] = []  # the answer, for Ollama's `context`
        if limit == 0:
            reason = "length"
        else:
            for text in backend.stream(tokens, sampling, frame.get("format")):
                last = time.perf_counter_ns()
                if count == 0:
                    first = last
                count += 1
                if rid in self.cancelled:
                    reason = "cancel"
                    break
                if top is not None:
                    held.append(backend.logprobs(top))
                out = stops.feed(text)
                if out:
                    written.append(out)
                    self._send_text(rid, out, held)
                if stops.stopped:  # tokens none of whose text was shown go with the stop string, logprobs and all
                    break
                if count >= limit:
                    reason = "length"
                    break
        if tail := stops.finish():
            written.append(tail)
            self._send_text(rid, tail, held)
        done = {
            "done_reason": reason,
            "prompt_eval_count": len(tokens),
            # The first token's time is the prompt's: llama.cpp evaluates the prompt, then samples.
            "prompt_eval_duration": first - started,
            "eval_count": count,
            "eval_duration": last - first,
        }
        if "prompt" in frame and not frame.get("raw"):  # /api/generate returns the whole exchange as tokens
            done["context"] = backend.tokenize(prompt + "".join(written))
        self.send({"id": rid, "done": done})

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
        self.send({"id": frame["id"], "result": {"tokens": self._model().tokenize(frame["text"])}})


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
