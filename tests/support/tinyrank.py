"""A tiny reranker for tests: tinymodels.py's random-weight BERT with rank pooling and a classification
head (the `cls` and `cls.output` tensors llama.cpp's BERT graph applies to the [CLS] state), and the
score llama-cpp-python gives a pair in-process, to compare the daemon's answers with.

Its vocabulary adds [CLS] at the start, and [SEP] both as the end of a text and as the separator, as
bge-reranker's does (<s> query </s></s> document </s>): llama-server's pair is then
[CLS] query [SEP] [SEP] document [SEP]. With `template`, the GGUF carries a rerank template
(`tokenizer.chat_template.rerank`, as Qwen3-Reranker's does) with {query} and {document} in it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import llama_cpp
import numpy as np
from gguf import GGUFWriter, PoolingType
from llama_cpp import Llama

from .tinymodels import write_tiny_bert

CLS, SEP = 2, 3  # write_tiny_bert's [CLS] and [SEP]
CONTEXT = 64


def write_tiny_reranker(path: Path, *, template: str | None = None, seed: int = 0, context_length: int = CONTEXT,
                        width: int = 32, n_layers: int = 2) -> Path:
    """A rank-pooling BERT GGUF with one output (its relevance score)."""

    def head(writer: GGUFWriter, weights: Callable[..., np.ndarray]) -> None:
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(True)
        writer.add_add_sep_token(True)
        writer.add_classifier_output_labels(["LABEL_0"])
        if template is not None:
            writer.add_chat_template([{"name": "rerank", "template": template}])
        writer.add_tensor("cls.weight", weights(width, width))
        writer.add_tensor("cls.bias", weights(width))
        writer.add_tensor("cls.output.weight", weights(1, width) * 10)
        writer.add_tensor("cls.output.bias", weights(1))

    return write_tiny_bert(path, context_length=context_length, width=width, n_layers=n_layers, seed=seed,
                           pooling=PoolingType.RANK, extend=head)


class InProcessScorer:
    """The reranker loaded by llama-cpp-python in this process: the score of a token sequence, decoded
    alone, read the way llama-server reads it (the first number of the sequence's rank output). With flash
    attention, as llama-server (auto) and r1's rank context have it: without, scores differ by 1e-4."""

    def __init__(self, path: Path) -> None:
        self.llm = Llama(str(path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK, flash_attn=True,
                         n_ctx=CONTEXT, n_batch=CONTEXT, n_ubatch=CONTEXT, verbose=False)

    def words(self, text: str, special: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=special)

    def pair(self, query: str, document: str) -> list[int]:
        """llama-server's pair for this vocabulary, spelled out."""
        return [CLS, *self.words(query), SEP, SEP, *self.words(document), SEP]

    def score(self, tokens: list[int]) -> float:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.llm.ctx), True)
        self.llm._batch.set_batch(tokens, n_past=0, logits_all=True)
        self.llm._ctx.decode(self.llm._batch)
        return float(llama_cpp.llama_get_embeddings_seq(self.llm.ctx, 0)[0])

    def close(self) -> None:
        self.llm.close()
