"""Several sequences in one llama.cpp context: slots, per-sequence samplers, one llama_decode a step.

The context holds `slots` sequences (n_seq_max), each in a KV cache stream of its own of num_ctx cells
(llama.cpp's kv_unified off): a token attends over its own sequence's cells only, so conversations held
in other slots cost a decode nothing. (In one unified cache every token is computed against every used
cell of every slot, masked: three idle 8K-token histories made a short answer beside them 3x slower.)
The runner keeps each sequence within num_ctx, so it always fits. A step decodes, in one batch, the
last sampled token of every generating sequence (and the drafts it guessed to follow: speculative.py) plus
chunks of the prompts still to evaluate, at most n_batch tokens in all, shortest prompt first: a short
request that arrives during a long prompt starts at once. Prompts and generating sequences share the
model's time by their number: after a step that carried a prompt chunk, the generating ones get steps of
their own for their share (a 25K-token prompt beside one chat takes half the time, not all of it), and only
prompts short enough to cost nothing ride along then.

A slot keeps the tokens its cells hold after its sequence ends (or is cancelled: its slot is free at
once, and its cells stay only as a cache that the next sequence there overwrites). A new sequence
goes to the free slot sharing the longest prefix with its prompt and evaluates only the rest: a chat's
next turn finds its history where the previous turn left it. As in Ollama, a sequence that would cut
into another conversation's cache takes the least recently used free slot instead, with a copy of
the shared prefix's cells. Streams copy whole (llama.cpp copies a stream's buffer, all num_ctx cells of
it), so a prefix too short to be worth that copy is evaluated again instead.
"""

from __future__ import annotations

import codecs
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from .base import SAMPLING_DEFAULTS, BackendError, shared_prefix
from .greedy import Greedy
from .kv_tiers import Tiers
from .llama_vision import ImagePrompt
from .speculative import EXACT_ROWS, MOST_DRAFTING, Drafting, Guesser, Tallies

LIB = llama_cpp.llama_cpp
# A prefix shorter than this share of a slot's cells is evaluated again rather than copied: a copy costs
# the whole stream whatever the prefix (Gemma 3 270M at num_ctx 32768: 590 MB), evaluating it costs its tokens.
COPY_SHARE = 64
# Prompt tokens that may still join a step that belongs to the generating sequences: a prompt this short
# is done in that one step, at no cost they would notice.
RIDE_ALONG = 32


def sampler_chain(vocab: Any, n_vocab: int, sampling: dict[str, Any], grammar: tuple[str, str] | None) -> Any:
    """A llama.cpp sampler chain for one sequence, in the order llama-cpp-python's `Llama` builds it:
    penalties, grammar, then greedy at temperature 0, else top_k, top_p, min_p, temperature, a seeded draw."""
    s = settings(sampling)
    grammar_sampler = None
    if grammar is not None:
        grammar_sampler = LIB.llama_sampler_init_grammar(vocab, grammar[0].encode(), grammar[1].encode())
        if not grammar_sampler:
            raise BackendError("llama.cpp could not parse the grammar made from this format")
    chain = LIB.llama_sampler_chain_init(LIB.llama_sampler_chain_default_params())
    last_n = s["repeat_last_n"] if s["repeat_last_n"] >= 0 else n_vocab
    keep = _kept_after_penalties(s, last_n, n_vocab) if grammar is None else 0
    if keep:
        LIB.llama_sampler_chain_add(chain, LIB.llama_sampler_init_top_k(keep))
    LIB.llama_sampler_chain_add(chain, LIB.llama_sampler_init_penalties(
        n_vocab, last_n, s["repeat_penalty"], s["frequency_penalty"], s["presence_penalty"]))
    if grammar_sampler is not None:
        LIB.llama_sampler_chain_add(chain, grammar_sampler)
    if s["temperature"] <= 0:
        LIB.llama_sampler_chain_add(chain, LIB.llama_sampler_init_greedy())
        return chain
    seed = s["seed"] if s.get("seed") is not None else random.getrandbits(31)
    for sampler in (LIB.llama_sampler_init_top_k(s["top_k"]), LIB.llama_sampler_init_top_p(s["top_p"], 1),
                    LIB.llama_sampler_init_min_p(s["min_p"], 1), LIB.llama_sampler_init_temp(s["temperature"]),
                    LIB.llama_sampler_init_dist(seed & 0xFFFFFFFF)):
        LIB.llama_sampler_chain_add(chain, sampler)
    return chain


def settings(sampling: dict[str, Any]) -> dict[str, Any]:
    """A request's sampling options over the defaults."""
    return {**SAMPLING_DEFAULTS, **{k: v for k, v in sampling.items() if v is not None}}


def greedy_sampler(ctx: Any, n_vocab: int, sampling: dict[str, Any], grammar: tuple[str, str] | None) -> Greedy | None:
    """A sampler that takes the best token in place (greedy.py), where the sample is that: temperature 0 and
    no grammar."""
    s = settings(sampling)
    if s["temperature"] > 0 or grammar is not None:
        return None
    return Greedy(ctx, n_vocab, s, s["repeat_last_n"] if s["repeat_last_n"] >= 0 else n_vocab)


def _kept_after_penalties(s: dict[str, Any], last_n: int, n_vocab: int) -> int:
    """How many of the best raw candidates certainly hold the sample's candidates after the penalties, or 0.

    The penalties look every candidate up in their counts (Gemma 3's 262k: 0.8 ms a sample, a quarter of the
    model thread's time with 8 sequences) but only lower the scores of the at most `last_n` tokens they
    count. So the best `want` candidates after them lie among the best `want + last_n` before them (at least
    `want` of those are not penalized, and nothing outside outranks those): keeping only these first gives
    the same sample, as cheap as greedy alone. Not with a grammar, which must see every candidate."""
    lowers_only = s["repeat_penalty"] >= 1 and s["frequency_penalty"] >= 0 and s["presence_penalty"] >= 0
    penalizes = s["repeat_penalty"] != 1 or s["frequency_penalty"] or s["presence_penalty"]
    want = 1 if s["temperature"] <= 0 else s["top_k"]
    if not (lowers_only and penalizes and last_n > 0 and want > 0) or want + last_n >= n_vocab:
        return 0
    return want + last_n


@dataclass
class Sequence:
    seq: int
    prompt: list[int]
    sampler: Any
    todo: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    next_token: int = -1  # sampled, not yet decoded
    forced: deque[int] = field(default_factory=deque)  # tokens to take instead of sampling (force())
    row: int = -1  # the batch row its last token was sampled from
    drafting: Drafting | None = None  # its prompt-lookup drafts (speculative.py), when it drafts
    images: ImagePrompt | None = None  # its prompt's images (llama_vision.py): it neither drafts nor uses the tiers
    greedy: Greedy | None = None  # samples in place of the chain at temperature 0 (greedy.py)
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))

    def sample(self, ctx: Any, row: int) -> int:
        """The token batch row `row` gives, counted in the penalties' window."""
        return self.greedy.sample(row) if self.greedy is not None else LIB.llama_sampler_sample(self.sampler, ctx, row)

    def accept(self, token: int) -> None:
        """A token taken without sampling (force()), counted as if sampled."""
        if self.greedy is not None:
            self.greedy.accept(token)
        else:
            LIB.llama_sampler_accept(self.sampler, token)


@dataclass
class Slot:
    index: int
    cached: list[int] = field(default_factory=list)  # the tokens whose KV cells this slot holds
    sequence: Sequence | None = None
    used: int = 0  # when it last took a sequence, in sequences added
    last: int | None = None  # the sequence it held last, whose reuse count stays readable until the next


class Batcher:
    """The slots of one context and the steps that advance them; one thread calls it."""

    def __init__(self, ctx: Any, model: Any, vocab: Any, slots: int, n_batch: int,
                 piece: Callable[[int], bytes], most_drafts: int = 0, tiers: Tiers | None = None,
                 draft_model: Guesser | None = None) -> None:
        self.ctx, self.vocab, self.piece = ctx, vocab, piece
        self.tiers = tiers  # the KV cache in RAM and on disk under the slots (kv_tiers.py), if any
        self.drafts = Tallies(most_drafts, draft_model)  # drafts by prompt lookup, or by the draft model
        self.cells = LIB.llama_n_ctx_seq(ctx)  # each slot's stream
        self.memory = LIB.llama_get_memory(ctx)
        self.n_vocab = LIB.llama_vocab_n_tokens(vocab)
        self.n_swa = LIB.llama_model_n_swa(model)
        # A recurrent state (Mamba, hybrid models) holds no cells to share: llama.cpp aborts on a partial copy.
        self.can_share = bool(LIB.llama_memory_can_shift(self.memory))
        self.n_batch = max(n_batch, slots)
        self.slots = [Slot(i) for i in range(slots)]
        self.waiting: deque[Sequence] = deque()  # added while every slot was busy, in arrival order
        self.reused: dict[int, int] = {}  # seq -> prompt tokens reused, until its slot takes another
        self.added = 0
        self.owed = 0.0  # seconds of steps of their own owed to the generating sequences by prompt work
        self.batch = LIB.llama_batch_init(self.n_batch, 0, 1)

    @property
    def busy(self) -> bool:
        return bool(self.waiting) or any(s.sequence is not None for s in self.slots)

    def add(self, seq: int, tokens: list[int], sampling: dict[str, Any], grammar: tuple[str, str] | None,
            draft: bool = True, images: ImagePrompt | None = None) -> None:
        if not tokens:
            raise BackendError("the prompt is empty: there is nothing to generate after")
        sequence = Sequence(seq, list(tokens), sampler_chain(self.vocab, self.n_vocab, sampling, grammar))
        sequence.images = images
        sequence.greedy = greedy_sampler(self.ctx, self.n_vocab, sampling, grammar)
        sequence.drafting = self.drafts.start(seq, sequence.prompt) if draft and images is None else None
        self.waiting.append(sequence)
        self._assign()

    def force(self, seq: int, tokens: list[int]) -> bool:
        sequence = next((s.sequence for s in self.slots if s.sequence is not None and s.sequence.seq == seq), None)
        if sequence is None:
            return False
        sequence.forced.extend(tokens)
        return True

    def cancel(self, seq: int) -> None:
        for sequence in self.waiting:
            if sequence.seq == seq:
                self.waiting.remove(sequence)
                self._free(sequence)
                return
        for slot in self.slots:
            if slot.sequence is not None and slot.sequence.seq == seq:
                self._release(slot)
                self._assign()
                return

    def _release(self, slot: Slot) -> None:
        """The slot is free; its cells keep the tokens evaluated so far for the next prompt to reuse."""
        assert slot.sequence is not None
        self._free(slot.sequence)
        slot.sequence = None

    @staticmethod
    def _free(sequence: Sequence) -> None:
        LIB.llama_sampler_free(sequence.sampler)
        if sequence.images is not None:
            sequence.images.close()

    def _assign(self) -> None:
        """Waiting sequences take free slots in arrival order, each the one with the longest shared prefix."""
        while self.waiting:
            free = [s for s in self.slots if s.sequence is None]
            if not free:
                return
            sequence = self.waiting.popleft()
            shared, best = max(((shared_prefix(s.cached, sequence.prompt), s) for s in free), key=lambda pair: pair[0])
            # At least the prompt's last token is evaluated: its logits give the first sample.
            keep = min(shared, len(sequence.prompt) - 1)
            if sequence.images is not None:  # an image's cells are kept whole or not at all
                keep = sequence.images.whole(keep)
            slot = best
            # Where `best` holds more than this prompt shares, keep it whole and work on a copy of the shared
            # prefix. Not when it holds the whole prompt: then only what followed it is lost (an answer to
            # be given again), and a prompt sent twice is computed the same way twice.
            if keep < len(best.cached) and shared < len(sequence.prompt) and len(free) > 1 and self.can_share:
                slot = min((s for s in free if s is not best), key=lambda s: (not self._beside_busy(s), s.used))
                if self.tiers is not None:
                    self.tiers.evicting(slot, 0)
                LIB.llama_memory_seq_rm(self.memory, slot.index, -1, -1)
                slot.cached = []
                if keep * COPY_SHARE >= self.cells and self.can_cut(best.index, keep):
                    LIB.llama_memory_seq_cp(self.memory, best.index, slot.index, -1, -1)  # streams copy whole
                    slot.cached = list(best.cached)  # cut to `keep` below
                else:
                    keep = 0
            if keep and not self.can_cut(slot.index, keep):
                keep = 0
            if self.tiers is not None:
                self.tiers.evicting(slot, keep)
            if not LIB.llama_memory_seq_rm(self.memory, slot.index, keep, -1):
                LIB.llama_memory_seq_rm(self.memory, slot.index, -1, -1)
                keep = 0
            del slot.cached[keep:]
            if self.tiers is not None and sequence.images is None:
                keep = self.tiers.recall(self, slot, sequence.prompt, keep)
            if slot.last is not None:
                self.reused.pop(slot.last, None)
            sequence.todo = sequence.prompt[keep:]
            self.reused[sequence.seq] = keep
            self.added += 1
            slot.sequence, slot.last, slot.used = sequence, sequence.seq, self.added

    def _beside_busy(self, slot: Slot) -> bool:
        """Whether a slot next to this one holds a sequence. llama.cpp decodes the tokens of consecutive
        streams together and each other run of them apart (a pass over the weights each): 4 clients on 8
        slots decoded 63 tok/s in all in scattered slots, 84 side by side (benchmarks/batching.py)."""
        return any(0 <= i < len(self.slots) and self.slots[i].sequence is not None
                   for i in (slot.index - 1, slot.index + 1))

    def can_cut(self, index: int, keep: int) -> bool:
        """A sliding-window layer forgets cells older than its window: a prefix whose last window is gone
        cannot be continued (llama.cpp's server checks the same)."""
        if self.n_swa <= 0:
            return True
        return LIB.llama_memory_seq_pos_min(self.memory, index) <= max(0, keep - self.n_swa)

    def step(self) -> list[tuple[int, str, bool]]:
        rows: list[tuple[Slot, int]] = []  # the slots that sample this step, with their logits' batch row
        n = 0
        started = time.perf_counter()  # an image's encoding below is the prompts' time too
        imaged = False
        decoding = sum(1 for s in self.slots if s.sequence is not None and not s.sequence.todo)
        # Drafts only where few sequences generate: with more, their rows cost more than they save (8 clients
        # on a CPU decoded 8% slower with them, on text that repeats nothing). Not beside a prompt, whose rows
        # would take the step past EXACT_ROWS.
        pending = any(s.sequence is not None and s.sequence.todo for s in self.slots)
        spare = min(self.n_batch, EXACT_ROWS) - decoding if decoding <= MOST_DRAFTING and not pending else 0
        for slot in self.slots:
            sequence = slot.sequence
            if sequence is not None and not sequence.todo:
                rows.append((slot, n))
                drafts = self._drafts(slot, spare)
                for token in (sequence.next_token, *drafts):  # drafts at the positions after, logits on each
                    self._put(n, token, len(slot.cached), slot.index, True)
                    slot.cached.append(token)
                    n += 1
                spare -= len(drafts)
        generating = n
        prompting = sorted((s for s in self.slots if s.sequence is not None and s.sequence.todo),
                           key=lambda s: (len(s.sequence.todo) if s.sequence else 0, s.used))
        turn = not generating or self.owed <= 0  # the prompts' turn: as many of their tokens as fit
        for slot in prompting:
            sequence = slot.sequence
            assert sequence is not None
            room = self.n_batch - n if turn else RIDE_ALONG - (n - generating)
            if self.tiers is not None and sequence.images is None:  # a prompt to save stops one short first
                room = self.tiers.room(slot, room)
            if room <= 0 or (not turn and len(sequence.todo) > room):
                break
            if sequence.images is not None:  # images at its head go in apart (mtmd), text up to the next
                if turn and sequence.images.evaluate(self.ctx, slot, sequence.todo, LIB.llama_n_batch(self.ctx)):
                    imaged = True
                room = sequence.images.text_run(sequence.todo, room)
            chunk = sequence.todo[:room]
            del sequence.todo[: len(chunk)]
            for i, token in enumerate(chunk):
                last = i == len(chunk) - 1 and not sequence.todo
                self._put(n, token, len(slot.cached), slot.index, last)
                slot.cached.append(token)
                n += 1
            if not sequence.todo:
                rows.append((slot, n - 1))
        if n == 0:
            return []
        self._decode(n)
        self._share(time.perf_counter() - started, generating, n > generating or imaged, turn)
        if self.tiers is not None:
            self.tiers.evaluated([s for s in prompting if s.sequence is None or s.sequence.images is None])
        return self._sample(rows)

    def _decode(self, n: int) -> None:
        self.batch.n_tokens = n
        status = LIB.llama_decode(self.ctx, self.batch)
        if status != 0:
            raise BackendError(f"llama.cpp could not decode a batch of {n} tokens (status {status}); "
                               "lower num_parallel or num_ctx")

    def _share(self, elapsed: float, generating: int, prompt_work: bool, turn: bool) -> None:
        """Keep the account of time between prompts and generating sequences, by their number."""
        prompting = sum(1 for s in self.slots if s.sequence is not None and s.sequence.todo)
        if not generating or not prompting:
            self.owed = 0.0  # nobody waits on anybody
        elif turn and prompt_work:
            self.owed += elapsed * generating / prompting
        else:
            self.owed -= elapsed

    def _put(self, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch = self.batch
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = logits

    def _sample(self, rows: list[tuple[Slot, int]]) -> list[tuple[int, str, bool]]:
        out: list[tuple[int, str, bool]] = []
        for slot, row in rows:
            sequence = slot.sequence
            assert sequence is not None
            if sequence.forced:  # the penalties and the grammar see it as if sampled
                tokens = [sequence.forced.popleft()]
                sequence.accept(tokens[0])
            elif sequence.drafting is not None and sequence.drafting.pending:
                tokens = self._verify(slot, row)
            else:
                tokens = [sequence.sample(self.ctx, row)]
            sequence.row = row + len(tokens) - 1
            for token in tokens:
                if LIB.llama_vocab_is_eog(self.vocab, token):
                    out.append((sequence.seq, sequence.decoder.decode(b"", final=True), True))
                    self._release(slot)
                    break
                sequence.next_token = token
                if sequence.drafting is not None:
                    sequence.drafting.lookup.extend(token)
                out.append((sequence.seq, sequence.decoder.decode(self.piece(token)), False))
        self._assign()
        return out

    def _drafts(self, slot: Slot, spare: int) -> list[int]:
        """The sequence's drafts for this step, within the batch's spare rows and its slot's cells. A recurrent
        state cannot drop the cells of rejected drafts: such models never draft."""
        sequence = slot.sequence
        assert sequence is not None
        if sequence.drafting is None or sequence.forced or not self.can_share:
            return []
        return sequence.drafting.propose(min(spare, self.cells - len(slot.cached) - 1), slot.index)

    def _verify(self, slot: Slot, row: int) -> list[int]:
        """The tokens the decoded token's row and its drafts' rows give; the cells of drafts not kept go."""
        sequence = slot.sequence
        assert sequence is not None and sequence.drafting is not None
        drafted = len(sequence.drafting.pending)
        tokens = sequence.drafting.verify(lambda i: sequence.sample(self.ctx, row + i),
                                          lambda token: bool(LIB.llama_vocab_is_eog(self.vocab, token)))
        rejected = drafted - (len(tokens) - 1)
        if rejected:
            LIB.llama_memory_seq_rm(self.memory, slot.index, len(slot.cached) - rejected, -1)
            del slot.cached[-rejected:]
        return tokens

    def last(self, seq: int) -> tuple[int, Any]:
        """The token `seq` sampled last, and the logits it was sampled from (valid until the next step)."""
        sequence = next(s.sequence for s in self.slots if s.sequence is not None and s.sequence.seq == seq)
        return sequence.next_token, LIB.llama_get_logits_ith(self.ctx, sequence.row)

    def close(self) -> None:
        for slot in self.slots:
            if slot.sequence is not None:
                self._release(slot)
        for sequence in self.waiting:
            self._free(sequence)
        self.waiting.clear()
        LIB.llama_batch_free(self.batch)

