"""A draft model for speculative decoding: a smaller model with the target's vocabulary guesses each
generating sequence's next tokens, and the target checks the guesses in one step (speculative.py).

It runs in the target's runner, on a context of its own with the same number of slots, one KV stream each,
so a slot's draft cells follow the sequence in it: a guess evaluates only the tokens the draft has not seen
(the prompt once, then the tokens the target kept), then decodes greedily while it is sure of the next
token. A guess costs the target nothing when it is wrong but its batch rows, and the acceptance floor in
speculative.py stops a sequence from drafting when the guesses are mostly wrong.
"""

from __future__ import annotations

from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama

from .base import BackendError, shared_prefix

LIB = llama_cpp.llama_cpp
# How likely the draft must find its next token to go on guessing: an unsure guess is often wrong, and costs
# a draft step and a batch row. llama-server's default, 0.75, made Gemma 3 270M Q4_K_M drafting for itself in
# F32 slower here (0.95x: a guess or so a step); 0.4 gave 1.4x and 0.2 1.66x (85% kept; benchmarks/speculative.py
# --draft). A draft that guesses badly stops drafting at speculative.py's ACCEPT_FLOOR.
P_MIN = 0.2
# Vocabularies may differ by a few padding tokens at their end, as llama.cpp allows between a model and
# its draft; the texts of this many tokens spread over the vocabulary must be the same.
VOCAB_SLACK = 128
VOCAB_SAMPLES = 2048


def check_compatible(target: Any, draft: Any) -> None:
    """Refuse a draft whose tokens are not the target's: its guesses would be other words."""
    n_target, n_draft = LIB.llama_vocab_n_tokens(target), LIB.llama_vocab_n_tokens(draft)
    same = (LIB.llama_vocab_type(target) == LIB.llama_vocab_type(draft)
            and LIB.llama_vocab_bos(target) == LIB.llama_vocab_bos(draft)
            and LIB.llama_vocab_eos(target) == LIB.llama_vocab_eos(draft)
            and abs(n_target - n_draft) <= VOCAB_SLACK)
    common = min(n_target, n_draft)
    step = max(1, common // VOCAB_SAMPLES)
    if not same or any(LIB.llama_vocab_get_text(target, t) != LIB.llama_vocab_get_text(draft, t)
                       for t in range(0, common, step)):
        raise BackendError(f"the draft model's vocabulary ({n_draft} tokens) is not the model's ({n_target}): "
                           "a draft must come from the same family, with the same tokenizer")


class DraftModel:
    """Guesses for the sequences in a target's slots, from a draft model's context with as many streams."""

    def __init__(self, llm: Llama, target_vocab: Any) -> None:
        self.llm = llm
        self.ctx = llm.ctx
        vocab = llm._model.vocab
        check_compatible(target_vocab, vocab)
        self.n_vocab = LIB.llama_vocab_n_tokens(vocab)
        self.target_vocab = LIB.llama_vocab_n_tokens(target_vocab)  # a guess past it the target cannot take
        self.memory = LIB.llama_get_memory(self.ctx)
        self.n_swa = LIB.llama_model_n_swa(llm.model)
        self.n_batch = llm.n_batch
        self.cached: list[list[int]] = [[] for _ in range(LIB.llama_n_seq_max(self.ctx))]
        self.batch = LIB.llama_batch_init(self.n_batch, 0, 1)

    def warm_up(self, size: int) -> None:
        """Decode a batch, then one token, as the target does at load: a kernel that crashes does so now."""
        self._decode(0, [t % self.n_vocab for t in range(size)])
        self._decode(0, [size % self.n_vocab])
        LIB.llama_memory_seq_rm(self.memory, 0, -1, -1)
        self.cached[0].clear()

    def guess(self, stream: int, tokens: list[int], most: int) -> list[int]:
        cached = self.cached[stream]
        keep = min(shared_prefix(cached, tokens), len(tokens) - 1)  # the last token's logits give the guess
        if keep < len(cached):
            keep = self._cut(stream, keep)
            del cached[keep:]
        todo = tokens[keep:]
        for start in range(0, len(todo), self.n_batch):
            row = self._decode(stream, todo[start:start + self.n_batch])
        drafts: list[int] = []
        while len(drafts) < most:
            token = self._sure(row)
            if token is None:
                break
            drafts.append(token)
            if len(drafts) < most:
                row = self._decode(stream, [token])
        return drafts

    def _cut(self, stream: int, keep: int) -> int:
        """Drop the stream's cells from `keep` on; all of them where a sliding window forgot what came before."""
        if (keep and (self.n_swa <= 0 or LIB.llama_memory_seq_pos_min(self.memory, stream) <= max(0, keep - self.n_swa))
                and LIB.llama_memory_seq_rm(self.memory, stream, keep, -1)):
            return keep
        LIB.llama_memory_seq_rm(self.memory, stream, -1, -1)
        return 0

    def _decode(self, stream: int, tokens: list[int]) -> int:
        """Evaluate `tokens` after the stream's cells, with logits for the last; its batch row."""
        cached, batch = self.cached[stream], self.batch
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = len(cached) + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = stream
            batch.logits[i] = i == len(tokens) - 1
        batch.n_tokens = len(tokens)
        status = LIB.llama_decode(self.ctx, batch)
        if status != 0:
            raise BackendError(f"llama.cpp could not decode the draft model's batch (status {status})")
        cached.extend(tokens)
        return len(tokens) - 1

    def _sure(self, row: int) -> int | None:
        """The draft's most likely next token, if it gives it at least P_MIN and the target knows it."""
        logits = np.ctypeslib.as_array(LIB.llama_get_logits_ith(self.ctx, row), shape=(self.n_vocab,))
        token = int(logits.argmax())
        chance = 1.0 / float(np.exp(logits - logits[token]).sum())
        return token if chance >= P_MIN and token < self.target_vocab else None

    def close(self) -> None:
        LIB.llama_batch_free(self.batch)
        self.llm.close()
