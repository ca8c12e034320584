"""Embeddings, whatever the route: /api/embed, /api/embeddings and /v1/embeddings parse their own
request shapes into an `EmbedRequest`; loading, truncation, `dimensions` and logging live here once.

Truncation happens in the runner, which has the tokenizer: an input longer than the context is cut
to it when `truncate` is on (Ollama's default) and refused with a 400 naming both lengths when off.
A failure of the runner is logged when it happens, with the route and the model, and reaches the
client as its own message and status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest
from .generation import Core, check_files, model_spec
from .memory import embedding_context
from .metrics import note
from .remote.engines import embeddings
from .remote.models import remote_of
from .scheduler.runner_client import RunnerError
from .store import ModelRecord, parse_name

log = logging.getLogger(__name__)

# `dimensions` keeps the first N numbers of each vector and scales them back to unit length. That
# gives a good embedding only from models trained for it (Matryoshka representation learning);
# for any other model it throws away most of what the vector says, so r1 refuses it there. Ollama
# shortens every model's vectors, and no GGUF key says whether a model was trained so; a setting
# for `r1 create` would leave every pulled model wrong by default. So r1 knows the families by
# name: one of these in the GGUF's general.name, or in the name the model has in the store
# (a Hugging Face repo, an Ollama library name), letters and digits only, compared in lower case.
MATRYOSHKA_FAMILIES = (
    "nomicembedtextv15", "nomicembedtextv2", "mxbaiembedlarge", "embeddinggemma", "qwen3embedding",
    "snowflakearcticembedmv15", "snowflakearcticembedmv2", "snowflakearcticembedlv2", "snowflakearcticembed2",
    "jinaembeddingsv3", "jinaembeddingsv4",
)
# Ollama library names that do not say their version: its nomic-embed-text is v1.5.
MATRYOSHKA_NAMES = frozenset({"nomicembedtext"})


@dataclass
class EmbedRequest:
    model: str
    inputs: list[str]  # none: Ollama's way of loading an embedding model
    options: dict[str, Any] = field(default_factory=dict)
    keep_alive: float | None = None
    truncate: bool = True
    dimensions: int | None = None  # checked positive by the route


def _letters(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def matryoshka(record: ModelRecord) -> bool:
    """Whether the model was trained to give shorter vectors as prefixes of its long ones."""
    stored = _letters(parse_name(record.name).model)
    names = (stored, _letters(record.manifest.facts.name or ""))
    return stored in MATRYOSHKA_NAMES or any(family in name for family in MATRYOSHKA_FAMILIES for name in names)


def check_dimensions(record: ModelRecord, dimensions: int | None) -> None:
    """Before anything loads: a model that cannot shorten its vectors refuses `dimensions`."""
    width = record.manifest.facts.embedding_length
    if dimensions is None or dimensions == width or matryoshka(record):
        return
    raise BadRequest(
        f"{record.name} cannot give vectors of {dimensions} dimensions: only embedding models trained for "
        f"shorter vectors (Matryoshka models such as nomic-embed-text v1.5) can; leave 'dimensions' out"
        + (f" to get all {width}" if width else "")
    )


def shorten(vectors: list[list[float]], dimensions: int | None, model: str) -> list[list[float]]:
    """The first `dimensions` numbers of each vector, scaled back to unit length."""
    if dimensions is None or not vectors or dimensions == len(vectors[0]):
        return vectors
    width = len(vectors[0])
    if dimensions > width:
        raise BadRequest(f"{model} makes vectors of {width} dimensions; 'dimensions' must be at most {width}, "
                         f"not {dimensions}")
    shortened = []
    for vector in vectors:
        head = vector[:dimensions]
        norm = math.sqrt(sum(x * x for x in head)) or 1.0
        shortened.append([x / norm for x in head])
    return shortened


async def embed(core: Core, request: EmbedRequest, route: str) -> dict[str, Any]:
    """{"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"} for the inputs;
    `route` names the endpoint in the log line a failure leaves."""
    started = time.perf_counter_ns()
    record = await asyncio.to_thread(core.store.get, request.model)
    if remote := remote_of(record.manifest):  # the upstream shortens vectors itself, or refuses to
        note(model=record.name, inputs=len(request.inputs), remote=remote[0])
        with core.remotes.answering(record):
            vectors, counted = (await embeddings(await core.remotes.engine(remote[0]), remote[1], request.inputs,
                                                 request.truncate, request.dimensions)
                                if request.inputs else ([], 0))
        return {"model": record.name, "embeddings": vectors, "total_duration": time.perf_counter_ns() - started,
                "load_duration": 0, "prompt_eval_count": counted or 0}
    await asyncio.to_thread(check_files, core.store, record)
    check_dimensions(record, request.dimensions)
    note(model=record.name, inputs=len(request.inputs))
    # A runner loaded for a larger num_ctx may serve this one: it cuts to the request's own.
    result, load_duration = await on_pooling_context(
        core, record, request.options, request.keep_alive, route, f"embed {len(request.inputs)} input(s)",
        "embed", {"input": request.inputs, "truncate": request.truncate} if request.inputs else None)
    result = result or {"embeddings": [], "prompt_eval_count": 0}
    return {
        "model": record.name,
        "embeddings": shorten(result["embeddings"], request.dimensions, record.name),
        "total_duration": time.perf_counter_ns() - started,
        "load_duration": load_duration,
        "prompt_eval_count": result["prompt_eval_count"],
    }


async def on_pooling_context(core: Core, record: ModelRecord, options: dict[str, Any], keep_alive: float | None,
                             route: str, what: str, op: str, fields: dict[str, Any] | None) -> tuple[Any, int]:
    """The runner's `op` (embed, rerank) with `fields`, on a runner leased with its pooling context counted on
    top of what it loads (GGUF); with no fields, the lease alone (the model loads, as for Ollama's empty
    input). The op's result (None without fields) and the load's duration; a failure is logged as `route`
    failing to `what`."""
    spec, _, _ = model_spec(core.store, record, options, core.scheduler.extra_buffers)
    if record.manifest.format == "gguf":
        spec = dataclasses.replace(spec, estimate=spec.estimate + embedding_context(record.manifest.facts, spec.num_ctx))
    try:
        async with core.scheduler.lease(spec, keep_alive) as lease:
            result = await lease.runner.call(op, num_ctx=spec.num_ctx, **fields) if fields is not None else None
    except RunnerError as exc:
        log.log(logging.WARNING if exc.status < 500 else logging.ERROR, "%s: %s could not %s: %s",
                route, record.name, what, exc)
        raise
    note(prompt_tokens=result["prompt_eval_count"] if result is not None else 0)
    return result, lease.load_duration
