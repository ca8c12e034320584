"""A runner with no model behind it, for in-process API tests: each generation answers with the
pieces of a script, one frame each, as a real runner streams tokens (with made-up log probabilities
when asked: see logprob_entry). It keeps what it was sent, so a test can check what the API made of
a request (options, messages, format) without a model."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

from r1.daemon.scheduler.model_spec import ModelSpec
from r1.daemon.scheduler.runner_client import RunnerError

MB = 1_000_000
_pids = itertools.count(90_000)

Frame = dict[str, Any]
Script = list[str | RunnerError]  # the pieces of every answer; an error ends it there
SCRIPT: Script = ["Hello", ",", " world", "!"]  # what scripted runners answer unless a test gives a script


def logprob_entry(piece: str, n: int, top: int) -> Frame:
    """What the scripted runner says of the n-th piece: log probability -n/10, and `top` alternatives,
    the piece first, then "?" pieces less likely."""
    def one(token: str, logprob: float) -> Frame:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    alternatives = [one(piece, -n / 10)] + [one("?" * k, -n / 10 - k) for k in range(1, top)]
    return {**one(piece, -n / 10), "top_logprobs": alternatives[:top]}


class ScriptedRunner:
    def __init__(self, spec: ModelSpec, extra_buffers: bool, script: Script, requests: list[Frame]) -> None:
        self.spec = spec
        self.pid = next(_pids)
        self.script = script
        self.info: dict[str, Any] = {"rss": 50 * MB, "gpu": False, "extra_buffers": extra_buffers,
                                     "context_length": spec.num_ctx, "load_duration": 1_000_000}
        self.alive = True
        self.death: str | None = None
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.requests = requests  # every generate and embed frame, as the core sent it

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        if op == "embed":
            self.requests.append({"op": op, **fields})
            # A unit vector per input, different for different texts.
            return {"embeddings": [[1.0, 0.0] if n % 2 == 0 else [0.0, 1.0] for n, _ in enumerate(fields["input"])],
                    "prompt_eval_count": sum(len(text) for text in fields["input"]), "duration": 1000}
        if op == "tokenize":  # a token per word of what the core sent
            self.requests.append({"op": op, **fields})
            text = fields.get("prompt") or " ".join(str(m.get("content")) for m in fields.get("messages", []))
            return {"tokens": list(range(len(text.split())))}
        return {"rss": 50 * MB} if op == "health" else {}

    async def generate(self, request: Frame) -> AsyncIterator[Frame]:
        self.requests.append(request)
        prompt = request.get("prompt") or " ".join(m["content"] for m in request.get("messages", []))
        yield {"start": {"opened_think": False}}
        limit = request.get("sampling", {}).get("num_predict", -1)
        pieces = self.script if limit is None or limit < 0 else self.script[:limit]
        top = request.get("logprobs")
        for n, piece in enumerate(pieces):
            await asyncio.sleep(0)  # a token's worth of turn-taking, as with a real runner
            if isinstance(piece, RunnerError):
                raise piece  # the runner failing mid-answer
            yield {"t": piece} if top is None else {"t": piece, "lp": [logprob_entry(piece, n, top)]}
        reason = "length" if len(pieces) < len(self.script) else "stop"
        yield {"done": {"done_reason": reason, "prompt_eval_count": len(prompt), "prompt_eval_duration": 1000,
                        "eval_count": len(pieces), "eval_duration": 1000 * len(pieces)}}

    async def stop(self) -> None:
        self.alive = False
        self.death = "exited with status 0"
        if not self.exited.done():
            self.exited.set_result(None)


class ScriptedRunners:
    """The runner factory an in-process app gets: every runner it starts speaks `script`."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.started: list[ScriptedRunner] = []
        self.requests: list[Frame] = []  # what every runner was sent, in order

    async def start(self, spec: ModelSpec, extra_buffers: bool) -> ScriptedRunner:
        runner = ScriptedRunner(spec, extra_buffers, self.script, self.requests)
        self.started.append(runner)
        return runner
