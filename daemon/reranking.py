"""Reranking, whatever the route: /api/rerank and /v1/rerank parse their own request shapes into a
`RerankRequest`; the capability check, loading, scoring and sorting live here once.

Only a GGUF with rank pooling (capabilities.RERANK) reranks; any other model is refused before anything
loads, with a 400 naming what it is and where its work goes instead. The scoring runs in the model's
runner (backends/llama_rank.py), leased from the scheduler like any other work, under the same budget;
truncation happens there, which has the tokenizer, as for embeddings.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .capabilities import COMPLETION, EMBEDDING, RERANK, capabilities
from .embedding import on_pooling_context
from .errors import BadRequest
from .generation import Core, check_files
from .metrics import note
from .store import ModelRecord

# Documents one request may rank: Cohere recommends at most 1,000 a request. Each is a decode's share of
# work in the runner, so the bound keeps one request from holding a model for minutes.
MAX_DOCUMENTS = 1000


@dataclass
class RerankRequest:
    model: str
    query: str
    documents: list[str]  # 1 to MAX_DOCUMENTS, checked by the route
    top_n: int | None = None  # at least 1, checked by the route; None: all
    options: dict[str, Any] = field(default_factory=dict)
    keep_alive: float | None = None
    truncate: bool = True


def check_reranker(model: str, record: ModelRecord) -> None:
    """Before anything loads: a model without rank pooling is refused, saying what to use instead."""
    found = capabilities(record.manifest.facts, None)
    if RERANK in found:
        return
    if EMBEDDING in found:
        instead = "it is an embedding model; send its input to /api/embed or /v1/embeddings"
    elif COMPLETION in found:
        instead = "it is a generative model; send it prompts at /api/chat or /v1/chat/completions"
    else:
        instead = "it has no rank pooling"
    raise BadRequest(f"{json.dumps(model)} does not support rerank: {instead}. Rerank with a reranker "
                     "(a GGUF with rank pooling, such as bge-reranker or Qwen3-Reranker)")


async def rerank(core: Core, request: RerankRequest, route: str) -> dict[str, Any]:
    """{"model", "results", "total_duration", "load_duration", "prompt_eval_count"}: results are
    {"index", "relevance_score"}, highest score first, the first top_n of them; `route` names the
    endpoint in the log line a failure leaves."""
    started = time.perf_counter_ns()
    record = await asyncio.to_thread(core.store.get, request.model)
    check_reranker(request.model, record)
    await asyncio.to_thread(check_files, core.store, record)
    note(model=record.name, inputs=len(request.documents))
    result, load_duration = await on_pooling_context(
        core, record, request.options, request.keep_alive, route, f"rerank {len(request.documents)} document(s)",
        "rerank", {"query": request.query, "documents": request.documents, "truncate": request.truncate})
    ranked = sorted(enumerate(result["scores"]), key=lambda pair: pair[1], reverse=True)
    return {
        "model": record.name,
        "results": [{"index": index, "relevance_score": score} for index, score in ranked[:request.top_n]],
        "total_duration": time.perf_counter_ns() - started,
        "load_duration": load_duration,
        "prompt_eval_count": result["prompt_eval_count"],
    }
