"""Embeddings through llama.cpp for inputs as long as the context.

An `Embedder` is a second llama.cpp context on the weights the runner already holds (no second
load), in embedding mode, with its own KV cache of n_ctx tokens. How it decodes depends on the
model's attention:

* Non-causal models (BERT, nomic-bert, EmbeddingGemma: embedding models proper) attend to a whole
  input at once, so llama.cpp needs each input in one micro-batch: n_batch = n_ubatch = n_ctx.
  llama.cpp pools (some models add dense layers after pooling, which only its graph knows).
* Causal models (chat models, Qwen3-Embedding) have an output layer, and in embedding mode
  llama.cpp computes it for every token, n_vocab floats each: one micro-batch of 4,096 Gemma 3
  tokens takes 8 GiB (measured). They are decoded in chunks whose logits fit LOGITS_BYTES; the KV
  cache carries the earlier chunks, so each token's hidden state is the one a single pass gives
  (equal to 1e-7, measured), and the embedder pools those states itself.

Inputs longer than the context are cut to it when `truncate` is on, keeping a model's closing
token (BERT's [SEP], an EOS a model asks for) at the end; otherwise they are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama

from .base import BackendError, Cancelled

# Bytes of logits one chunk of a causal model may produce: llama.cpp holds them twice (the graph's
# tensor and the output buffer). daemon/memory.py's estimate of the embedding context follows it.
LOGITS_BYTES = 256 * 1024 * 1024
MIN_CHUNK = 64
POOLINGS = frozenset({llama_cpp.LLAMA_POOLING_TYPE_MEAN, llama_cpp.LLAMA_POOLING_TYPE_CLS,
                      llama_cpp.LLAMA_POOLING_TYPE_LAST})


def chunk_tokens(vocab_size: int, n_ctx: int) -> int:
    """Tokens a causal model decodes at a time in embedding mode."""
    return max(MIN_CHUNK, min(n_ctx, LOGITS_BYTES // (4 * max(vocab_size, 1))))


def pooling_context(model: Any, n_ctx: int, n_batch: int, sequences: int, pooling: int, flash_attn: int,
                    n_threads: int, kind: str) -> tuple[Any, Any]:
    """A context in embedding mode on the loaded weights, its sequences sharing its n_ctx cells however they
    split them, and a batch of n_batch tokens for it; `kind` names it in the error."""
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = params.n_ubatch = n_batch
    params.n_seq_max = sequences
    params.kv_unified = True
    params.embeddings = True
    params.pooling_type = pooling
    params.flash_attn_type = flash_attn
    params.n_threads = params.n_threads_batch = n_threads
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        raise BackendError(f"llama.cpp could not make {kind} context of {n_ctx} tokens; lower the num_ctx option")
    return ctx, llama_cpp.llama_batch_init(n_batch, 0, 1)


class Embedder:
    def __init__(self, llm: Llama, n_threads: int) -> None:
        self.model = llm._model.model
        self.vocab = llm._model.vocab
        self.tokenize = llm.tokenize
        metadata = llm.metadata
        arch = metadata.get("general.architecture", "")
        self.causal = metadata.get(f"{arch}.attention.causal", "true") != "false"
        # Embedding models name their pooling; a chat model gets the mean of its token states.
        pooling = int(metadata.get(f"{arch}.pooling_type", llama_cpp.LLAMA_POOLING_TYPE_MEAN))
        if pooling == llama_cpp.LLAMA_POOLING_TYPE_RANK:
            raise BackendError("this model is a reranker: it scores pairs of texts, it does not embed them")
        self.pooling = pooling if pooling in POOLINGS else llama_cpp.LLAMA_POOLING_TYPE_MEAN
        # llama.cpp rounds n_ctx up (to 256); positions past the trained context mean nothing (BERT's
        # position embeddings end there), so the limit is the smaller of the two, as in Ollama.
        self.n_ctx = min(llm.n_ctx(), llama_cpp.llama_model_n_ctx_train(self.model) or llm.n_ctx())
        self.width = llama_cpp.llama_model_n_embd_out(self.model)
        self.chunk = chunk_tokens(llama_cpp.llama_vocab_n_tokens(self.vocab), self.n_ctx) if self.causal else self.n_ctx
        self.max_sequences = min(self.n_ctx, llama_cpp.llama_max_parallel_sequences())
        # Causal models: per-token states, pooled here across chunks; others: llama.cpp pools.
        pooled_by = llama_cpp.LLAMA_POOLING_TYPE_NONE if self.causal else self.pooling
        # A whole-context micro-batch would need n_ctx x n_ctx attention scores per head: flash attention,
        # where the backend has it, does without. Chunks keep them small, and without it a causal model's
        # vectors match those of llama.cpp's own pooling (with it: cosine 0.998, measured on Gemma 3).
        flash = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED if self.causal else llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
        self.ctx, self.batch = pooling_context(self.model, self.n_ctx, self.chunk, self.max_sequences, pooled_by, flash,
                                               n_threads, "an embedding")

    def embed(self, texts: list[str], truncate: bool, context: int,
              stop: Callable[[], bool]) -> tuple[list[list[float]], int]:
        """Unit-length vectors, and the tokens evaluated (after truncation to `context`, or less if the
        model was trained on less); Cancelled between two decodes once `stop` says so."""
        limit = min(context, self.n_ctx)
        inputs = [self._fit(text, n, len(texts), truncate, limit) for n, text in enumerate(texts)]
        vectors: list[np.ndarray] = []
        for group in self._groups(inputs):
            _check(stop)
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
            vectors.extend(self._pool_in_chunks(group, stop) if self.causal else self._pool_whole(group))
        return [(v / max(float(np.linalg.norm(v)), 1e-12)).tolist() for v in vectors], sum(map(len, inputs))

    def warm_up(self, tokens: list[int]) -> None:
        """One decode, as a load does to meet a crashing CPU kernel there rather than mid-request."""
        self._decode(self._rows([tokens]))

    def _fit(self, text: str, index: int, count: int, truncate: bool, limit: int) -> list[int]:
        """The input's tokens with the model's own special tokens, cut to `limit` if allowed."""
        tokens = self.tokenize(text.encode(), add_bos=True, special=False)
        which = f"input {index}" if count > 1 else "the input"
        if not tokens:
            raise BackendError(f"{which} has no tokens; send some text")
        if len(tokens) <= limit:
            return tokens
        if not truncate:
            wider = ", raise the num_ctx option" if limit < llama_cpp.llama_model_n_ctx_train(self.model) else ""
            raise BackendError(
                f"{which} is {len(tokens)} tokens, more than the model's context of {limit} tokens; "
                f"shorten it{wider}, or leave truncate on to cut it to the context"
            )
        vocab = self.vocab
        closing = {llama_cpp.llama_vocab_eos(vocab) if llama_cpp.llama_vocab_get_add_eos(vocab) else None,
                   llama_cpp.llama_vocab_sep(vocab) if llama_cpp.llama_vocab_get_add_sep(vocab) else None}
        keep_last = 1 if tokens[-1] in closing else 0
        return tokens[: limit - keep_last] + tokens[len(tokens) - keep_last:]

    def _groups(self, inputs: list[list[int]]) -> Iterator[list[list[int]]]:
        """Consecutive inputs that fit the context together: one KV cache's worth each."""
        group: list[list[int]] = []
        size = 0
        for tokens in inputs:
            if group and (size + len(tokens) > self.n_ctx or len(group) == self.max_sequences):
                yield group
                group, size = [], 0
            group.append(tokens)
            size += len(tokens)
        if group:
            yield group

    def _decode(self, rows: np.ndarray) -> None:
        """One llama_decode of rows (token, position, sequence), every row an output."""
        batch = self.batch
        batch.n_tokens = len(rows)
        for i, (token, position, seq) in enumerate(rows.tolist()):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = True
        status = llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama.cpp's decode returned {status} while computing embeddings")

    @staticmethod
    def _rows(group: list[list[int]]) -> np.ndarray:
        return np.array([(t, p, s) for s, tokens in enumerate(group) for p, t in enumerate(tokens)], dtype=np.int64)

    def _pool_whole(self, group: list[list[int]]) -> list[np.ndarray]:
        self._decode(self._rows(group))
        return [np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_seq(self.ctx, s), shape=(self.width,)).astype(np.float64)
                for s in range(len(group))]

    def _pool_in_chunks(self, group: list[list[int]], stop: Callable[[], bool]) -> list[np.ndarray]:
        rows = self._rows(group)
        lengths = np.array([len(tokens) for tokens in group])
        pooled = np.zeros((len(group), self.width))
        for start in range(0, len(rows), self.chunk):
            if start:
                _check(stop)
            part = rows[start:start + self.chunk]
            self._decode(part)
            states = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings(self.ctx), shape=(len(part), self.width))
            positions, seqs = part[:, 1], part[:, 2]
            if self.pooling == llama_cpp.LLAMA_POOLING_TYPE_MEAN:
                np.add.at(pooled, seqs, states)
            else:  # the state at one position: the first (CLS) or the last
                wanted = positions == (0 if self.pooling == llama_cpp.LLAMA_POOLING_TYPE_CLS else lengths[seqs] - 1)
                pooled[seqs[wanted]] = states[wanted]
        if self.pooling == llama_cpp.LLAMA_POOLING_TYPE_MEAN:
            pooled /= lengths[:, None]
        return list(pooled)

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)


def _check(stop: Callable[[], bool]) -> None:
    if stop():
        raise Cancelled("the embedding's client went away")
