"""The daemon's remote engines, one per remote r1.db records (records.py), made when first used and made again
when `r1 remote add` changes a remote; and the answer of one, as wire events, for a request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ..config import Settings
from ..errors import BadRequest, NotFound
from ..store import ModelRecord
from .engine import RemoteEngine
from .records import RemoteRecords
from .wire import Event, ollama_call, ollama_events, openai_call, openai_events


class Remotes:
    def __init__(self, records: RemoteRecords, settings: Settings) -> None:
        self.records = records  # the remotes and their prices
        self._settings = settings
        self._engines: dict[str, RemoteEngine] = {}
        self._retired: list[RemoteEngine] = []  # replaced engines, closed with the daemon
        self.serving: dict[str, tuple[ModelRecord, int]] = {}  # remote models with requests in flight, by name

    @contextlib.contextmanager
    def answering(self, record: ModelRecord) -> Iterator[None]:
        """Counts a request to a remote model while it runs, for /api/ps."""
        _, count = self.serving.get(record.name, (record, 0))
        self.serving[record.name] = (record, count + 1)
        try:
            yield
        finally:
            _, count = self.serving[record.name]
            if count == 1:
                del self.serving[record.name]
            else:
                self.serving[record.name] = (record, count - 1)

    async def engine(self, name: str) -> RemoteEngine:
        remote = next(iter(await asyncio.to_thread(self.records.remotes, name)), None)
        if remote is None:
            raise NotFound(f"no remote named {name!r}; `r1 remote list` shows them, `r1 remote add` adds one")
        engine = self._engines.get(name)
        if engine is None or engine.remote != remote:
            if engine is not None:  # changed by `r1 remote add`: its requests in flight finish on the old one
                self._retired.append(engine)
            engine = self._engines[name] = RemoteEngine(remote, self._settings)
        return engine

    async def close(self) -> None:
        for engine in [*self._engines.values(), *self._retired]:
            await engine.close()
        self._engines.clear()
        self._retired.clear()


@contextlib.asynccontextmanager
async def answer(engine: RemoteEngine, upstream: str, *, messages: list[dict[str, Any]] | None, prompt: str | None,
                 system: str | None, raw: bool, options: dict[str, Any], fmt: str | dict[str, Any] | None,
                 tools: list[Any] | None, think: bool | None) -> AsyncIterator[AsyncIterator[Event]]:
    """The upstream's streamed answer, in events; the request is sent on entry."""
    remote = engine.remote
    if remote.dialect == "openai":
        if messages is None and not raw:  # the upstream's chat template does what r1's would
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        elif messages is None and system:
            raise BadRequest("a raw prompt has no place for a system prompt; put it in the prompt")
        call = openai_call(upstream, messages, prompt, options, fmt, tools)
        events = openai_events
    else:
        call = ollama_call(upstream, messages, prompt, system=system, raw=raw, options=options, fmt=fmt, tools=tools,
                           think=think)
        events = ollama_events
    async with (engine.post(call.path, call.body) as response,
                contextlib.aclosing(engine.read(events(response, remote.name))) as read):
        yield read


async def embeddings(engine: RemoteEngine, upstream: str, inputs: list[str], truncate: bool,
                     dimensions: int | None) -> tuple[list[list[float]], int | None]:
    """The upstream's vectors for `inputs`, and the tokens it counted (None where it gave no count)."""
    if engine.remote.dialect == "openai":
        body: dict[str, Any] = {"model": upstream, "input": inputs, "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        async with engine.post("/embeddings", body) as response:
            with engine.faults():
                answer = await response.json(content_type=None)
                data = sorted(answer.get("data") or [], key=lambda item: item["index"])
                vectors = [item["embedding"] for item in data]
                return vectors, (answer.get("usage") or {}).get("prompt_tokens")
    body = {"model": upstream, "input": inputs, "truncate": truncate}
    if dimensions is not None:
        body["dimensions"] = dimensions
    async with engine.post("/api/embed", body) as response:
        with engine.faults():
            answer = await response.json(content_type=None)
            return answer.get("embeddings") or [], answer.get("prompt_eval_count")
