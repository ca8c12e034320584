"""Reranking through llama.cpp: the relevance of documents to a query, from a model with rank pooling
(`{arch}.pooling_type` 4: bge-reranker, jina-reranker, Qwen3-Reranker).

A `Ranker` is an embedding context (llama_embed.py) whose pooling is llama.cpp's RANK: the model's
classification head turns each sequence into its scores, and the first is the document's relevance,
as llama-server reports it. Each (query, document) pair is one sequence, built as llama-server builds
it: the model's rerank template (`tokenizer.chat_template.rerank`, with {query} and {document}) when
its GGUF has one, else [BOS] query [EOS] [SEP] document [EOS], each special token where the vocabulary
asks for it. Pairs are decoded together, as many as the context holds, each one whole in one
micro-batch (a non-causal model attends to all of it at once).

A pair longer than the context loses the end of its document when `truncate` is on (the closing tokens
stay), as the embed routes cut their inputs; otherwise it is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import llama_cpp
from llama_cpp import Llama

from .base import BackendError, Cancelled
from .llama_embed import Embedder, pooling_context


@dataclass
class PairFormat:
    """How a pair becomes tokens: `head` + document + `tail`, or the template whole when it fits."""

    template: str | None
    bos: list[int]
    query_end: list[int]  # [EOS] [SEP], as the vocabulary adds them
    closing: list[int]  # [EOS] after the document


class Ranker(Embedder):
    """The decoding (groups of sequences, one decode each) is the Embedder's; the pooling is RANK."""

    def __init__(self, llm: Llama, n_threads: int) -> None:
        if not ranks(llm):
            raise BackendError("this model does not rerank: only models with rank pooling (a classification head, "
                               "as bge-reranker and Qwen3-Reranker have) score documents")
        self.model = llm._model.model
        self.vocab = llm._model.vocab
        self.tokenize = llm.tokenize
        self.causal = False  # scores come pooled from llama.cpp, whatever the attention
        self.pooling = llama_cpp.LLAMA_POOLING_TYPE_RANK
        self.n_ctx = min(llm.n_ctx(), llama_cpp.llama_model_n_ctx_train(self.model) or llm.n_ctx())
        self.width = llama_cpp.llama_model_n_cls_out(self.model)
        self.chunk = self.n_ctx
        self.max_sequences = min(self.n_ctx, llama_cpp.llama_max_parallel_sequences())
        template = llama_cpp.llama_model_chat_template(self.model, b"rerank")
        self.format = PairFormat(template.decode() if template else None, *_special_tokens(self.vocab))
        # A pair is decoded whole, in one micro-batch.
        self.ctx, self.batch = pooling_context(self.model, self.n_ctx, self.n_ctx, self.max_sequences,
                                               llama_cpp.LLAMA_POOLING_TYPE_RANK, llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
                                               n_threads, "a rerank")

    def rank(self, query: str, documents: list[str], truncate: bool, context: int,
             stop: Callable[[], bool]) -> tuple[list[float], int]:
        """Each document's score, in the documents' order, and the tokens evaluated; Cancelled between two
        decodes once `stop` says so."""
        limit = min(context, self.n_ctx)
        pairs = [self._pair(query, document, n, len(documents), truncate, limit) for n, document in enumerate(documents)]
        scores: list[float] = []
        for group in self._groups(pairs):
            if stop():
                raise Cancelled("the rerank's client went away")
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
            self._decode(self._rows(group))
            scores.extend(float(llama_cpp.llama_get_embeddings_seq(self.ctx, s)[0]) for s in range(len(group)))
        return scores, sum(map(len, pairs))

    def embed(self, texts: list[str], truncate: bool, context: int,
              stop: Callable[[], bool]) -> tuple[list[list[float]], int]:
        raise BackendError("this model is a reranker: it scores pairs of texts, it does not embed them")

    def _pair(self, query: str, document: str, index: int, count: int, truncate: bool, limit: int) -> list[int]:
        """The pair's tokens, cut to `limit` by the end of its document if allowed."""
        if self.format.template is not None:
            head, _, tail = self.format.template.partition("{document}")
            whole = self._words(self.format.template.replace("{query}", query).replace("{document}", document), True)
            query_part = self._words(head.replace("{query}", query), True)
            closing = self._words(tail.replace("{query}", query), True)
        else:
            query_part = [*self.format.bos, *self._words(query), *self.format.query_end]
            closing = self.format.closing
            whole = [*query_part, *self._words(document), *closing]
        if len(whole) <= limit:
            return whole
        which = f"document {index}" if count > 1 else "the document"
        if not truncate:
            raise BackendError(
                f"the query with {which} is {len(whole)} tokens, more than the model's context of {limit} tokens; "
                "shorten it, raise the num_ctx option, or leave truncate on to cut the document to the context"
            )
        if len(query_part) + len(closing) >= limit:
            raise BackendError(f"the query is {len(query_part)} tokens with the pair's own, leaving no room for a "
                               f"document in the model's context of {limit} tokens; shorten the query")
        return whole[: limit - len(closing)] + closing

    def _words(self, text: str, special: bool = False) -> list[int]:
        return self.tokenize(text.encode(), add_bos=False, special=special)


def ranks(llm: Llama) -> bool:
    """Whether the model's GGUF asks for rank pooling."""
    arch = llm.metadata.get("general.architecture", "")
    return llm.metadata.get(f"{arch}.pooling_type") == str(llama_cpp.LLAMA_POOLING_TYPE_RANK)


def _special_tokens(vocab: llama_cpp.llama_vocab_p) -> tuple[list[int], list[int], list[int]]:
    """[BOS], [EOS] [SEP] and [EOS] as llama-server puts them around a pair (SEP stands in for a missing EOS)."""
    eos = llama_cpp.llama_vocab_eos(vocab)
    if eos < 0:
        eos = llama_cpp.llama_vocab_sep(vocab)
    bos = [llama_cpp.llama_vocab_bos(vocab)] if llama_cpp.llama_vocab_get_add_bos(vocab) else []
    closing = [eos] if llama_cpp.llama_vocab_get_add_eos(vocab) and eos >= 0 else []
    sep = [llama_cpp.llama_vocab_sep(vocab)] if llama_cpp.llama_vocab_get_add_sep(vocab) else []
    return bos, closing + sep, closing
