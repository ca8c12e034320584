"""Speculative decoding: a generating sequence guesses its next tokens, and the model checks the guesses.

The guesses come from the sequence's own text (prompt lookup, below), or from a draft model: a smaller model
with the same vocabulary (draft_model.py), as a Modelfile's DRAFT sets.

Where the last few tokens a sequence holds (prompt and answer) appeared before in it, the tokens that
followed them then are a likely continuation now: a list repeated, code edited, a quote. The batcher
decodes the sampled token and these drafts together, at consecutive positions, each with its logits, and
samples the rows left to right with the sequence's own sampler chain, keeping drafts while the sample is
the draft; the first sample that differs is the next token, and the rejected drafts' cells go. Every token
is sampled from the same logits, with the same penalties, grammar and random draws as without drafts, so
the answer is the same (in distribution, and token for token under a seed or at temperature 0): a fixed
draft is accepted with exactly the probability the model gives it.

A draft costs a batch row and its logits (on a CPU, Gemma 3 270M's 262k-token output layer makes each
row cost about a third of the step), so a sequence whose drafts are mostly wrong stops drafting, and a
sequence with no earlier match drafts nothing and decodes as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# Longest n-gram first: a longer match is a surer guess. A lone repeated token guesses too poorly to pay
# for its rows on a CPU.
NGRAM_SIZES = (4, 3, 2)
# Tokens drafted per step at most, by default (the load option lookup_drafts; 0 turns drafting off).
LOOKUP_DRAFTS = 6
# Rows a step with drafts decodes at most. Up to 7, llama.cpp's CPU kernels (quantized weights, flash
# attention) give each row the logits it gets decoded alone, to the bit; from 8 rows they take another path
# that sums in another order, and a near tie in a greedy answer went the other way (measured on Gemma 3
# 270M Q4_K_M: 0.0 apart at 2 to 7 rows, 1.08 at 8 and 9). F16 and F32 weights differ from 2 rows on.
EXACT_ROWS = 7
# Sequences generating together at most for any of them to draft: each draft is a batch row, and beside many
# sequences a step has no rows to spare on a CPU.
MOST_DRAFTING = 2
# After this many drafted tokens, a sequence that kept fewer than ACCEPT_FLOOR of them stops drafting: a
# draft row costs about a third of a step here, so below that share drafts slow the answer down.
TRIAL = 24
ACCEPT_FLOOR = 0.4
# Finished sequences' counts wait here until the runner reads them; the bound drops the unread.
KEPT_TALLIES = 256


class Lookup:
    """A sequence's tokens, with where each of their recent n-grams was last followed by another token."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens: list[int] = []
        self.after: dict[tuple[int, ...], int] = {}  # n-gram -> index of the token that followed it last
        for token in tokens:
            self.extend(token)

    def extend(self, token: int) -> None:
        tokens, end = self.tokens, len(self.tokens)
        for n in NGRAM_SIZES:
            if end >= n:
                self.after[tuple(tokens[end - n:end])] = end
        tokens.append(token)

    def draft(self, most: int) -> list[int]:
        """Up to `most` tokens that followed the longest earlier occurrence of the sequence's last n-gram."""
        tokens, end = self.tokens, len(self.tokens)
        for n in NGRAM_SIZES:
            if end > n:
                found = self.after.get(tuple(tokens[end - n:]))
                if found is not None:
                    return tokens[found:found + most]
        return []


class Guesser(Protocol):
    """A draft model: up to `most` tokens likely to follow `tokens`, the sequence held in slot `stream`."""

    def guess(self, stream: int, tokens: list[int], most: int) -> list[int]: ...


@dataclass
class Drafting:
    """One sequence's drafts: its lookup (its tokens so far), its draft model if any, how many it drafted and kept."""
    lookup: Lookup
    most: int
    model: Guesser | None = None
    drafted: int = 0
    accepted: int = 0
    pending: list[int] = field(default_factory=list)  # decoded this step, not yet verified

    def propose(self, room: int, stream: int) -> list[int]:
        """Drafts for the next step, at most `room`; none once the acceptance rate has fallen too low."""
        most = min(self.most, room)
        if most <= 0 or (self.drafted >= TRIAL and self.accepted < ACCEPT_FLOOR * self.drafted):
            self.pending = []
        elif self.model is not None:
            self.pending = self.model.guess(stream, self.lookup.tokens, most)
        else:
            self.pending = self.lookup.draft(most)
        return self.pending

    def verify(self, sample: Callable[[int], int], is_end: Callable[[int], bool]) -> list[int]:
        """The tokens this step gives, sampling row 0 (the decoded token's), then each draft's row while the
        sample equals the draft; ends at the first that differs, after the last draft, or at an end token."""
        drafts, self.pending = self.pending, []
        tokens: list[int] = []
        for i in range(len(drafts) + 1):
            token = sample(i)
            tokens.append(token)
            if i == len(drafts) or token != drafts[i] or is_end(token):
                break
        self.drafted += len(drafts)
        self.accepted += sum(1 for token, draft in zip(tokens, drafts) if token == draft)
        return tokens


class Tallies:
    """Drafted and accepted counts by sequence, for the runner's final stats."""

    def __init__(self, most: int, model: Guesser | None = None) -> None:
        self.most = most  # tokens drafted per step; 0: no drafting
        self.model = model  # the draft model, or None for prompt lookup
        self.by_seq: dict[int, Drafting] = {}

    def start(self, seq: int, tokens: list[int]) -> Drafting | None:
        if self.most <= 0:
            return None
        drafting = Drafting(Lookup(tokens), self.most, self.model)
        self.by_seq[seq] = drafting
        while len(self.by_seq) > KEPT_TALLIES:
            del self.by_seq[next(iter(self.by_seq))]
        return drafting

    def take(self, seq: int) -> tuple[int, int]:
        """(drafted, accepted) for a finished sequence, once."""
        drafting = self.by_seq.pop(seq, None)
        return (0, 0) if drafting is None else (drafting.drafted, drafting.accepted)
