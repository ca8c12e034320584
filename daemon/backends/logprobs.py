"""Token log probabilities from a model's scores over its vocabulary, in the shape the APIs send.

One entry per sampled token, as Ollama writes it (and OpenAI's chat completions too):
{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}, ...]}, the
alternatives likeliest first. The probabilities are the model's own, before the sampler's
temperature, cut-offs (top_k, top_p) and grammar reshape them, as llama.cpp's server and Ollama
report them (mlx-lm applies repetition penalties first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def token_entry(log_probs: np.ndarray, token: int, top: int, piece: Callable[[int], bytes]) -> dict[str, Any]:
    """The entry for `token`, given the log probabilities it was sampled from and `piece`, the bytes of a token."""
    entry = _one(log_probs, token, piece)
    best: list[int] = []
    if top > 0:
        top = min(top, log_probs.size)
        candidates = np.argpartition(-log_probs, top - 1)[:top]  # the `top` largest, in no order
        best = candidates[np.argsort(-log_probs[candidates], kind="stable")].tolist()
    entry["top_logprobs"] = [_one(log_probs, t, piece) for t in best]
    return entry


def _one(log_probs: np.ndarray, token: int, piece: Callable[[int], bytes]) -> dict[str, Any]:
    raw = piece(token)
    return {"token": raw.decode("utf-8", errors="replace"), "logprob": float(log_probs[token]), "bytes": list(raw)}
