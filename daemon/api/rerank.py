"""/api/rerank (r1's own; Ollama has none) and /v1/rerank (the shape llama-server, Jina and Cohere use).

Both take `model`, `query`, `documents` (strings, or {"text": ...} objects as Cohere and Jina accept),
`top_n` and `return_documents`, and Ollama's `options`, `keep_alive` and `truncate` (on by default: a
pair longer than the context loses the end of its document). Results come highest score first, each
with the index of its document in the request; `return_documents` (off by default, as in Cohere's API
and llama-server) adds the document's text. Errors take each route's dialect: Ollama's {"error": "..."}
on /api/rerank, OpenAI's on /v1/rerank.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..errors import BadRequest
from ..reranking import MAX_DOCUMENTS, RerankRequest, rerank
from ..options.check import check_options
from .context import CORE
from .fields import get_bool, keep_alive, positive_int, required_str
from .http import read_json

routes = web.RouteTableDef()

Json = dict[str, Any]


def documents_of(body: Json) -> list[str]:
    """The documents' texts: 1 to MAX_DOCUMENTS strings or {"text": string} objects."""
    value = body.get("documents")
    if value is None:
        raise BadRequest("field 'documents' is required: a list of the texts to rank against the query")
    if not isinstance(value, list) or not value:
        raise BadRequest("field 'documents' must be a non-empty list of strings (or of {\"text\": ...} objects)")
    if len(value) > MAX_DOCUMENTS:
        raise BadRequest(f"field 'documents' holds {len(value)} documents; one request ranks at most "
                         f"{MAX_DOCUMENTS}: send them in several requests and merge the scores")
    texts = []
    for index, document in enumerate(value):
        text = document.get("text") if isinstance(document, dict) else document
        if not isinstance(text, str):
            raise BadRequest(f"documents[{index}] must be a string or an object with a string 'text', "
                             f"not {json.dumps(document)[:80]}")
        texts.append(text)
    return texts


def rerank_request(body: Json) -> RerankRequest:
    model = required_str(body, "model")
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise BadRequest("field 'query' is required: a non-empty string, the text the documents are ranked against")
    return RerankRequest(model=model, query=query, documents=documents_of(body), top_n=positive_int(body, "top_n"),
                         options=check_options(body.get("options")), keep_alive=keep_alive(body),
                         truncate=get_bool(body, "truncate", True))


async def ranked(request: web.Request) -> tuple[RerankRequest, dict[str, Any]]:
    """The request's parsed form and the core's answer, with the documents' texts if asked for."""
    body = await read_json(request)
    parsed = rerank_request(body)
    with_documents = get_bool(body, "return_documents", False)
    result = await rerank(request.app[CORE], parsed, request.path)
    if with_documents:
        for entry in result["results"]:
            entry["document"] = {"text": parsed.documents[entry["index"]]}
    return parsed, result


@routes.post("/api/rerank")
async def rerank_route(request: web.Request) -> web.Response:
    _, result = await ranked(request)
    return web.json_response(result)


@routes.post("/v1/rerank")
async def rerank_v1(request: web.Request) -> web.Response:
    parsed, result = await ranked(request)
    tokens = result["prompt_eval_count"]
    return web.json_response({
        "model": parsed.model,
        "object": "list",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "results": result["results"],
    })
