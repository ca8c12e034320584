"""The sampler chain's shortcut (candidates cut to the best few before the penalties) and the greedy sampler
that reads a row in place (greedy.py): the same samples as the whole chain.

Real Gemma 3 270M logits (its 262k-token vocabulary is where the penalties cost most), a history that the
penalties count, and for each of many positions the token each samples against the whole chain's: greedy,
and seeded at temperature 0.8, with repeat, presence and frequency penalties."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import pytest

from r1.daemon.backends import llama_batch
from r1.daemon.backends.base import SAMPLING_DEFAULTS

LIB = llama_cpp.llama_cpp


@pytest.fixture(scope="module")
def gemma_logits(gemma_path: Path) -> Iterator[tuple[Any, Any, int, list[int]]]:
    """A context whose batch holds logits for every position of a story's tokens: (ctx, vocab, n_vocab, rows)."""
    params = LIB.llama_model_default_params()
    params.use_extra_bufts = False  # the kernels that are safe on every CPU
    model = LIB.llama_model_load_from_file(str(gemma_path).encode(), params)
    vocab = LIB.llama_model_get_vocab(model)
    context = LIB.llama_context_default_params()
    context.n_ctx, context.n_threads, context.n_threads_batch = 512, 2, 2
    ctx = LIB.llama_init_from_model(model, context)
    text = b"The cat sat on the mat. The cat sat on the mat again, and the dog sat by the door of the house."
    tokens = (LIB.llama_token * 256)()
    n = LIB.llama_tokenize(vocab, text, len(text), tokens, 256, True, False)
    batch = LIB.llama_batch_init(n, 0, 1)
    for i in range(n):
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = tokens[i], i, 1, True
        batch.seq_id[i][0] = 0
    batch.n_tokens = n
    assert LIB.llama_decode(ctx, batch) == 0
    yield ctx, vocab, LIB.llama_vocab_n_tokens(vocab), list(tokens[:n])
    LIB.llama_batch_free(batch)
    LIB.llama_free(ctx)
    LIB.llama_model_free(model)


def samples(ctx: Any, chain: Any, tokens: list[int]) -> list[int]:
    """The token the chain samples at each position, its history growing with the story's own tokens."""
    out = []
    for row, token in enumerate(tokens):
        out.append(LIB.llama_sampler_sample(chain, ctx, row))  # accepts its own sample
        LIB.llama_sampler_accept(chain, token)  # and the story's next token: a history with repeats
    LIB.llama_sampler_free(chain)
    return out


@pytest.mark.parametrize("sampling", [
    {"temperature": 0},
    {"temperature": 0, "repeat_penalty": 1.5, "presence_penalty": 0.5, "frequency_penalty": 0.5},
    {"temperature": 0.8, "seed": 7},
    {"temperature": 0.8, "seed": 7, "repeat_penalty": 1.3, "repeat_last_n": 8, "top_k": 5},
], ids=["greedy", "greedy-heavy", "sampled", "sampled-short-window"])
def test_the_shortcut_samples_what_the_whole_chain_samples(gemma_logits: tuple[Any, Any, int, list[int]],
                                                           sampling: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, vocab, n_vocab, tokens = gemma_logits
    assert llama_batch._kept_after_penalties({**SAMPLING_DEFAULTS, **sampling},
                                             sampling.get("repeat_last_n", 64), n_vocab) > 0, "the shortcut is on"
    fast = samples(ctx, llama_batch.sampler_chain(vocab, n_vocab, sampling, None), tokens)
    monkeypatch.setattr(llama_batch, "_kept_after_penalties", lambda *_: 0)
    whole = samples(ctx, llama_batch.sampler_chain(vocab, n_vocab, sampling, None), tokens)
    assert fast == whole
    assert len(set(whole)) > 3, "the positions give different samples: the comparison means something"


@pytest.mark.parametrize("sampling", [
    {"temperature": 0},
    {"temperature": 0, "repeat_penalty": 1.0},
    {"temperature": 0, "repeat_penalty": 1.5, "presence_penalty": 0.5, "frequency_penalty": 0.5},
    {"temperature": 0, "repeat_penalty": 0.8, "presence_penalty": -0.5},  # penalties that raise scores
    {"temperature": 0, "repeat_penalty": 3.0, "repeat_last_n": 4},
    {"temperature": 0, "repeat_penalty": 1.3, "repeat_last_n": -1},
], ids=["default", "no-penalty", "heavy", "raising", "short-window", "whole-window"])
def test_the_greedy_sampler_samples_what_the_chain_samples(gemma_logits: tuple[Any, Any, int, list[int]],
                                                           sampling: dict[str, Any]) -> None:
    ctx, vocab, n_vocab, tokens = gemma_logits
    greedy = llama_batch.greedy_sampler(ctx, n_vocab, sampling, None)
    assert greedy is not None
    in_place = []
    for row, token in enumerate(tokens):
        in_place.append(greedy.sample(row))
        greedy.accept(token)
    chain = samples(ctx, llama_batch.sampler_chain(vocab, n_vocab, sampling, None), tokens)
    assert in_place == chain
    assert len(set(chain)) > 3, "the positions give different samples: the comparison means something"


@pytest.mark.unit
def test_the_greedy_sampler_is_only_for_greedy_samples_without_a_grammar() -> None:
    assert llama_batch.greedy_sampler(None, 10, {"temperature": 0.7}, None) is None
    assert llama_batch.greedy_sampler(None, 10, {"temperature": 0}, ("root ::= \"a\"", "root")) is None


@pytest.mark.unit
def test_no_shortcut_where_it_could_change_the_sample() -> None:
    s = {**SAMPLING_DEFAULTS, "temperature": 0}
    assert llama_batch._kept_after_penalties({**s, "repeat_penalty": 0.9}, 64, 1000) == 0  # raises scores
    assert llama_batch._kept_after_penalties({**s, "presence_penalty": -1}, 64, 1000) == 0
    assert llama_batch._kept_after_penalties({**s, "repeat_penalty": 1.0}, 64, 1000) == 0  # no penalties: no cost
    assert llama_batch._kept_after_penalties({**SAMPLING_DEFAULTS, "top_k": 0}, 64, 1000) == 0  # every candidate
    assert llama_batch._kept_after_penalties(s, 64, 1000) == 65
    assert llama_batch._kept_after_penalties(s, 999, 1000) == 0  # no smaller than the vocabulary
