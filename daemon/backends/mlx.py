"""MLX models (a folder of safetensors, config.json and tokenizer files) through mlx-lm.

Generation runs on mlx-lm's `BatchGenerator` (continuous batching): sequences join and leave a
running batch, each step decodes one token for every generating sequence and evaluates one
chunk of the prompts still being read. The runner does stop strings, limits and cancellation
itself, so the generator's own stop conditions are only the model's end tokens.

Per sequence: temperature, top_k, top_p, min_p, the repeat/presence/frequency penalties and the
seed (each sequence samples with its own random key, so a seeded request repeats whatever runs
beside it). mlx-lm cannot constrain output to a grammar, so `format` is refused.

A finished sequence's KV cache is kept (mlx_cache.py) so that the next turn of its chat evaluates
only the new tokens. A long prompt's cache is also saved on disk once evaluated (mlx_disk_cache.py),
for the same prompt, or one that goes on from it, after an unload or a restart.

MLX picks its device itself (the GPU through Metal where there is one, else the CPU) and
loads weights its own way, so num_gpu, num_thread and use_mmap change nothing here; num_batch is
the size of a prompt chunk.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx_lm
import numpy as np
from mlx_lm.generate import BatchGenerator
from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p, greedy_sampler, make_logits_processors
from mlx_lm.tokenizer_utils import StreamingDetokenizer

from .base import SAMPLING_DEFAULTS, BackendError, BatchBackend, check_vocabulary
from .logprobs import token_entry
from .mlx_cache import PromptCaches
from .mlx_disk_cache import disk_cache_for

PROMPT_CHUNK = 512  # prompt tokens evaluated per step when the load options give no num_batch

Sampler = Callable[[mx.array], mx.array]


@dataclass
class _Sequence:
    uid: int  # the BatchGenerator's id for it
    detokenizer: StreamingDetokenizer
    prompt: list[int]
    last: tuple[int, mx.array] | None = None  # the token step() returned last, and its log probabilities


class MlxBackend(BatchBackend):
    def __init__(self, path: Path, load: dict[str, Any]) -> None:
        # mlx_lm.load() downloads from the Hub whatever is not a local path; r1 passes folders only.
        if not Path(path).is_dir():
            raise BackendError(f"{path} is not a folder: an MLX model is a folder of safetensors files")
        try:
            # mlx_lm.load's annotation leaves out the config that return_config=True adds.
            self._model, self._tokenizer, config = mlx_lm.load(str(path), return_config=True)  # type: ignore[misc]
        except (FileNotFoundError, ValueError) as exc:  # missing files, unsupported model_type
            raise BackendError(f"mlx-lm could not load {Path(path).name}: {exc}") from exc
        tokenizer = self._tokenizer
        self.on_gpu = mx.metal.is_available()
        template = getattr(tokenizer, "chat_template", None)
        if isinstance(template, dict):  # named templates; "default" is the chat one
            template = template.get("default")
        self.chat_template = template if isinstance(template, str) else None
        self.bos_token = tokenizer.bos_token or ""
        self.eos_token = tokenizer.eos_token or ""
        text_config = config.get("text_config") or {}  # multimodal configs nest the language model's
        self.context_length = (
            load.get("num_ctx")
            or config.get("max_position_embeddings")
            or text_config.get("max_position_embeddings")
            or 4096
        )
        # Whether the tokenizer puts BOS first by default (llama-style post-processor,
        # add_bos_token): tokenize() then adds it itself, and nothing else encode() might add.
        bos_id = tokenizer.bos_token_id
        self._add_bos = bos_id is not None and tokenizer.encode("a")[:1] == [bos_id]
        self.slots = load.get("num_parallel") or 1
        self._vocabulary = len(tokenizer._tokenizer)  # added tokens too, unlike vocab_size
        self._batch = BatchGenerator(
            self._model,
            # The runner ends a sequence before its context is full; this only bounds a runaway one.
            max_tokens=self.context_length,
            stop_tokens=[[t] for t in tokenizer.eos_token_ids],
            completion_batch_size=self.slots,
            prefill_batch_size=self.slots,
            prefill_step_size=load.get("num_batch") or PROMPT_CHUNK,
        )
        self._seqs: dict[int, _Sequence] = {}
        self._ended: dict[int, _Sequence] = {}  # those that ended in the latest step, for their logprobs
        self._by_uid: dict[int, int] = {}
        self._caches = PromptCaches(self.slots)
        self._disk = disk_cache_for(load.get("kv_cache"))  # the prompt cache on disk, if R1_KV_CACHE_DISK
        # Prompt tokens each sequence took from a kept cache; readable after it ends, until `slots` newer ones start.
        self._reused: dict[int, int] = {}
        self._own = itertools.count(-1, -1)  # stream()'s sequence ids, apart from the runner's
        self._streaming: int | None = None

    def tokenize(self, text: str) -> list[int]:
        tokens = self._tokenizer.encode(text, add_special_tokens=False)  # special tokens are parsed
        if self._add_bos and not text.startswith(self.bos_token):
            tokens.insert(0, self._tokenizer.bos_token_id)
        return tokens

    def detokenize(self, tokens: list[int]) -> str:
        check_vocabulary(tokens, self._vocabulary)
        return self._tokenizer.decode(tokens, skip_special_tokens=False)

    # Batching

    @property
    def busy(self) -> bool:
        return bool(self._seqs)

    def add(self, seq: int, tokens: list[int], sampling: dict[str, Any], fmt: str | dict | None,
            draft: bool = True) -> None:  # mlx-lm's batch does not draft
        if fmt is not None:
            raise BackendError(
                "the MLX backend cannot constrain output to JSON (format); use a GGUF model for format/JSON schema"
            )
        if not tokens:
            raise BackendError("the prompt is empty: generation needs at least one token")
        if seq in self._seqs:
            raise BackendError(f"sequence {seq} is already running")
        sampler, processors = self._sampling(sampling)
        cache, reused = self._caches.take(tokens)
        loaded = self._disk.load(self._model, tokens, reused) if self._disk is not None else None
        if loaded is not None:
            cache, reused = loaded
        (uid,) = self._batch.insert(
            [tokens[reused:]], caches=[cache] if cache else None, all_tokens=[tokens[:reused]],
            samplers=[sampler], logits_processors=[processors],
        )
        self._seqs[seq] = _Sequence(uid, self._detokenizer(), tokens)
        self._by_uid[uid] = seq
        self._caches.fit(len(self._seqs))
        self._reused.pop(seq, None)
        self._reused[seq] = reused
        finished = [s for s in self._reused if s not in self._seqs]
        for old in finished[: max(0, len(finished) - self.slots)]:
            del self._reused[old]

    def reused(self, seq: int) -> int:
        return self._reused.get(seq, 0)

    def cancel(self, seq: int) -> None:
        state = self._seqs.pop(seq, None)
        if state is None:
            return
        del self._by_uid[state.uid]
        # What it evaluated so far stays useful: a client that stops a turn early may send the next one.
        for cache, tokens in self._batch.remove([state.uid], return_prompt_caches=True).values():
            self._caches.keep(list(tokens), cache, len(self._seqs))

    def step(self) -> list[tuple[int, str, bool]]:
        out = []
        self._ended = {}
        prompted, responses = self._batch.next()
        if self._disk is not None:
            self._save_prompts(prompted)
        for r in responses:
            seq = self._by_uid[r.uid]
            state = self._seqs[seq]
            if r.finish_reason != "stop":  # "stop" is an end token, whose text is not the answer's
                state.detokenizer.add_token(r.token)
                state.last = (r.token, r.logprobs)
            if r.finish_reason is None:
                out.append((seq, state.detokenizer.last_segment, False))
                continue
            # The generator has dropped the sequence; its cache is the next turn's prefix.
            state.detokenizer.finalize()  # a trailing space or incomplete character held back
            out.append((seq, state.detokenizer.last_segment, True))
            self._ended[seq] = self._seqs.pop(seq)
            del self._by_uid[r.uid]
            self._caches.keep(list(r.all_tokens), r.prompt_cache, len(self._seqs))
        return out

    def _save_prompts(self, prompted: list[Any]) -> None:
        """Save the cache of each prompt just evaluated but for its last token (the generator evaluates that
        one with the first sample, in a step of its own): the same prompt or a longer one continues from it."""
        assert self._disk is not None
        for r in prompted:
            done, total = r.progress
            seq = self._by_uid.get(r.uid)
            if not r.end_of_segment or done != total - 1 or seq is None:
                continue
            prefix = self._seqs[seq].prompt[:-1]
            if self._disk.wants(prefix):
                cache, _ = self._batch.extract_cache([r.uid])[r.uid]
                self._disk.save(prefix, cache)

    # One sequence at a time, on top of the batch

    def stream(self, tokens: list[int], sampling: dict[str, Any], fmt: str | dict | None) -> Iterator[str]:
        if self.busy:
            raise BackendError("stream() runs one sequence alone; this backend is batching others")
        seq = next(self._own)
        self.add(seq, tokens, sampling, fmt)
        self._streaming = seq
        try:
            while seq in self._seqs:
                for _, text, ended in self.step():
                    if text or not ended:
                        yield text
        finally:
            self.cancel(seq)  # stopped early by the caller
            self._streaming = None

    def logprobs(self, top: int) -> dict[str, Any]:
        uid = self._streaming
        state = None if uid is None else self._seqs.get(uid) or self._ended.get(uid)
        if state is None or state.last is None:
            raise BackendError("no token to give log probabilities for")
        token, logprobs = state.last  # mlx-lm's, already normalised over the vocabulary
        return token_entry(np.array(logprobs.astype(mx.float32)), token, top,
                           lambda t: self._tokenizer.decode([t]).encode())

    def _sampling(self, sampling: dict[str, Any]) -> tuple[Sampler, list[Any]]:
        s = {**SAMPLING_DEFAULTS, **sampling}
        if not 0.0 <= s["min_p"] <= 1.0:  # checked now: inside step() it would fail the whole batch
            raise BackendError(f"invalid sampling option: min_p must be between 0 and 1, not {s['min_p']}")
        # Ollama's repeat_last_n: 0 turns the penalties off, -1 means the whole context.
        last_n = self.context_length if s["repeat_last_n"] < 0 else s["repeat_last_n"]
        penalize = last_n > 0  # mlx-lm would read a window of 0 as every token
        try:
            processors = make_logits_processors(
                repetition_penalty=s["repeat_penalty"] if penalize and s["repeat_penalty"] != 1.0 else None,
                repetition_context_size=last_n,
                presence_penalty=s["presence_penalty"] if penalize else None,
                presence_context_size=last_n,
                frequency_penalty=s["frequency_penalty"] if penalize else None,
                frequency_context_size=last_n,
            )
        except ValueError as exc:  # e.g. a negative repeat_penalty
            raise BackendError(f"invalid sampling option: {exc}") from exc
        if s["temperature"] <= 0:  # greedy, as llama.cpp reads a temperature of 0 or less
            return greedy_sampler, processors  # one shared sampler: the batch's argmax is one call
        seed = sampling["seed"] if sampling.get("seed") is not None else random.getrandbits(31)
        return self._sampler(s, seed), processors

    def _sampler(self, s: dict[str, Any], seed: int) -> Sampler:
        """mlx-lm's filters in make_sampler's order, then a draw with this sequence's own key:
        make_sampler draws from MLX's global random state, which every sequence in a batch shares."""
        filters: list[Sampler] = []
        if 0 < s["top_p"] < 1:
            filters.append(lambda x: apply_top_p(x, s["top_p"]))
        if s["min_p"] > 0:
            filters.append(lambda x: apply_min_p(x, s["min_p"]))
        if 0 < s["top_k"] < self._vocabulary:  # mlx-lm refuses a top_k as large as the vocabulary
            filters.append(lambda x: apply_top_k(x, s["top_k"]))
        key = mx.random.key(seed)
        scale = 1.0 / s["temperature"]

        def sample(logprobs: mx.array) -> mx.array:
            nonlocal key
            for f in filters:
                logprobs = f(logprobs)
            key, draw = mx.random.split(key)
            return mx.random.categorical(logprobs * scale, key=draw)

        return sample

    def _detokenizer(self) -> StreamingDetokenizer:
        """mlx-lm's streaming detokenizer, started after a special token whose text is discarded.

        Fresh, it drops the leading space of the first text it produces: right for decoding a
        whole text, wrong for a continuation ("The capital is" + " Paris").
        """
        detokenizer = self._tokenizer.detokenizer  # a fresh copy per call
        anchor = next((t for t in (self._tokenizer.eos_token_id, self._tokenizer.bos_token_id) if t is not None), None)
        if anchor is not None:
            detokenizer.add_token(anchor)
            _ = detokenizer.last_segment  # reading it moves the detokenizer past the anchor's text
        return detokenizer

    def memory(self) -> dict[str, int]:
        tier = self._disk.memory() if self._disk is not None else {}
        return {"mlx_active": mx.get_active_memory(), "mlx_peak": mx.get_peak_memory(), **tier}

    def unaccounted_memory(self) -> int:
        # On Metal the weights and cache live in GPU buffers, not in the resident set; on the CPU they do.
        return mx.get_active_memory() if mx.metal.is_available() else 0

    def close(self) -> None:
        self._batch.close()  # gives back the wired memory limit it raised on Metal
        self._model = self._tokenizer = None
        del self._batch, self._caches  # a closed backend is never used again
        mx.clear_cache()  # return the freed buffers now, not when MLX next needs memory


BACKEND = MlxBackend
