"""GGUF models through llama-cpp-python.

`Llama` loads the model, tokenizes and embeds; generation runs on its context through
llama.cpp's low-level batch API (backends/llama_batch.py), since `Llama.generate` holds one
sequence only. The context is made with num_parallel sequence slots of num_ctx tokens each, as
Ollama sizes it; the runner does stop strings, limits and cancellation itself, per sequence.

Loading ends with a warm-up decode, as llama.cpp's server does: a CPU kernel that crashes
(AMX on some Xeons, see daemon/kernels.py) kills the runner while it loads, where the
scheduler can retry without extra buffers, never in the middle of someone's answer.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama, LlamaGrammar

from .base import BackendError, BatchBackend, check_vocabulary, never
from .devices import gpus, offload
from .draft_model import DraftModel
from .kv_tiers import Tiers, tiers_for
from .llama_batch import Batcher
from .llama_embed import Embedder
from .llama_rank import Ranker, ranks
from .llama_vision import ImagePrompt, Projector
from .logprobs import log_softmax, token_entry
from .speculative import EXACT_ROWS, LOOKUP_DRAFTS

# Tokens decoded together at warm-up. With extra buffers on, 17 runs every path of the AMX
# kernels (a full 16-row tile, a partial one; the one-token step after runs the third) and the
# 4-row repacked ones: very short prompts have been seen to get through where longer ones crash.
# Without them, the plain kernels need no more than llama.cpp's server decodes: 2 tokens.
WARM_UP_BATCH = {True: 17, False: 2}
# The load option kv_cache_type as llama.cpp's K and V cache type; a quantized V cache needs flash attention.
KV_CACHE_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}


@contextlib.contextmanager
def _extra_buffers(on: bool) -> Iterator[None]:
    """llama.cpp's extra buffer types (AMX, repacked weights) on or off for the models loaded meanwhile.

    `Llama()` has no keyword for `use_extra_bufts` (llama-cpp-python 0.3.36); it starts from
    `llama_model_default_params()`, so that is what changes, for the time of the call.
    """
    if on:
        yield
        return
    low_level = llama_cpp.llama_cpp
    if "use_extra_bufts" not in {field[0] for field in low_level.llama_model_params._fields_}:
        raise BackendError("this llama-cpp-python is too old to turn off llama.cpp's extra buffer types; "
                           "upgrade it, or set R1_LLAMA_EXTRA_BUFFERS=on")
    defaults = low_level.llama_model_default_params

    def without_extra_buffers() -> llama_cpp.llama_model_params:
        params = defaults()
        params.use_extra_bufts = False
        return params

    low_level.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        low_level.llama_model_default_params = defaults


@contextlib.contextmanager
def _sequences(slots: int) -> Iterator[None]:
    """Contexts made meanwhile hold `slots` sequences, each in its own KV stream (llama_batch.py says
    why): `Llama()` has no keyword for n_seq_max."""
    low_level = llama_cpp.llama_cpp
    defaults = low_level.llama_context_default_params

    def with_slots() -> llama_cpp.llama_context_params:
        params = defaults()
        params.n_seq_max = slots
        params.kv_unified = False
        return params

    low_level.llama_context_default_params = with_slots
    try:
        yield
    finally:
        low_level.llama_context_default_params = defaults


# The sequence id stream() generates under; the runner's request ids are never negative.
ALONE = -1


class LlamaCppBackend(BatchBackend):
    def __init__(self, path: Path, load: dict[str, Any]) -> None:
        self.extra_buffers: bool = bool(load.get("extra_buffers", True))
        self.slots = load.get("num_parallel") or 1
        self.kv_cache_type = load.get("kv_cache_type", "f16")
        if self.kv_cache_type not in KV_CACHE_TYPES:
            raise BackendError(f"kv_cache_type must be one of {', '.join(KV_CACHE_TYPES)}, not {self.kv_cache_type!r}")
        if self.slots < 1 or self.slots > llama_cpp.llama_max_parallel_sequences():
            raise BackendError(f"num_parallel must be between 1 and {llama_cpp.llama_max_parallel_sequences()}, "
                               f"not {self.slots}")
        # A num_thread sets both thread counts, as in Ollama; without one, token-by-token decoding
        # (bound by memory bandwidth) takes half the cores and prompts (bound by compute) all of them.
        threads = load.get("num_thread")
        n_ctx = load.get("num_ctx", 4096) * self.slots
        devices = gpus()
        planned = offload(load, devices)  # as many layers as fit the GPU, or num_gpu's
        self.offload = {**planned.to_frame(), "devices": [d.to_frame() for d in devices]} if planned else None
        self._params = dict(
            model_path=str(path),
            n_ctx=n_ctx,
            # -1 offloads every layer; on a CPU-only build it changes nothing.
            n_gpu_layers=planned.layers if planned else load.get("num_gpu", -1),
            n_threads=threads or max(1, (os.cpu_count() or 2) // 2),
            n_threads_batch=threads or os.cpu_count() or 1,
            # llama-cpp-python holds the batch to n_ctx, but sizes its logits by the batch asked for first.
            n_batch=min(load.get("num_batch", 512), n_ctx),
            use_mmap=load.get("use_mmap", True),
            # Flash attention, as llama-server has it where the device can: without it, llama.cpp's CPU path
            # computes a token decoded beside its predecessors (a draft, speculative.py) up to 0.7 apart in its
            # logits from the same token decoded alone, and a greedy answer with drafts could take another word.
            flash_attn=True,
            type_k=KV_CACHE_TYPES[self.kv_cache_type],
            type_v=KV_CACHE_TYPES[self.kv_cache_type],
            last_n_tokens_size=64,
            verbose=False,
        )
        try:
            with _extra_buffers(self.extra_buffers), _sequences(self.slots):
                self.llm = Llama(**self._params)
        except ValueError as exc:  # llama-cpp-python's way of saying the file would not load
            raise BackendError(f"llama.cpp could not load {path.name}: {exc}") from exc
        self._embedder: Embedder | None = None
        self._warm_up(path)
        self._batcher: Batcher | None = None
        self._draft: DraftModel | None = None
        if self.llm._ctx.memory is not None:  # models without a KV cache only embed
            if load.get("draft"):
                self._draft = self._load_draft(Path(load["draft"]))
            self._batcher = Batcher(self.llm.ctx, self.llm.model, self.llm._model.vocab, self.slots,
                                    self.llm.n_batch, lambda token: self.llm.detokenize([token]),
                                    EXACT_ROWS - 1 if self._draft else load.get("lookup_drafts", LOOKUP_DRAFTS),
                                    tiers_for(self.llm.ctx, load.get("kv_cache")), self._draft)
        # The vision projector (the model's mmproj GGUF), when the model has one: images in its prompts.
        self._projector = (Projector(Path(load["projector"]), self.llm.model, self._params["n_threads_batch"],
                                     use_gpu=self._params["n_gpu_layers"] != 0) if load.get("projector") else None)
        self.context_length = llama_cpp.llama_n_ctx_seq(self.llm.ctx)  # each slot's own cells
        self.threads = (llama_cpp.llama_n_threads(self.llm.ctx), llama_cpp.llama_n_threads_batch(self.llm.ctx))
        self.on_gpu = bool(llama_cpp.llama_supports_gpu_offload()) and self._params["n_gpu_layers"] != 0
        self.chat_template = self.llm.metadata.get("tokenizer.chat_template")
        self.bos_token = self._token_text(self.llm.token_bos())
        self.eos_token = self._token_text(self.llm.token_eos())

    def _warm_up(self, path: Path) -> None:
        """Decode a batch, then one token: the prompt and the per-token kernels both run once."""
        model = self.llm._model.model
        if not llama_cpp.llama_model_has_decoder(model) or llama_cpp.llama_model_has_encoder(model):
            return  # encoder models (embeddings, T5) are never decoded token by token
        size = max(1, min(WARM_UP_BATCH[self.extra_buffers], self.llm.n_ctx() - 1, self.llm.n_batch))
        tokens = [t % self.llm.n_vocab() for t in range(size + 1)]
        try:
            if self.llm._ctx.memory is None:
                # Non-causal models (BERT-like embedders) keep no KV cache: they only embed, so their
                # embedding context (a rerank context for a reranker) is made now and warms up instead.
                self._embedder = (Ranker if ranks(self.llm) else Embedder)(self.llm, self._params["n_threads_batch"])
                self._embedder.warm_up(tokens[:size])
                return
            self.llm.eval(tokens[:size])
            self.llm.eval(tokens[size:])
        except RuntimeError as exc:  # llama_decode returned an error
            raise BackendError(f"llama.cpp could not run {path.name}: {exc}") from exc
        self.llm.reset()  # the next prompt starts from an empty context
        llama_cpp.llama_memory_clear(self.llm._ctx.memory, True)

    def _load_draft(self, path: Path) -> DraftModel:
        """The draft model (a Modelfile's DRAFT) on a context like the model's: as many slots, as many cells."""
        try:
            with _extra_buffers(self.extra_buffers), _sequences(self.slots):
                llm = Llama(**{**self._params, "model_path": str(path)})
        except ValueError as exc:
            raise BackendError(f"llama.cpp could not load the draft model {path.name}: {exc}") from exc
        try:
            draft = DraftModel(llm, self.llm._model.vocab)
            draft.warm_up(max(1, min(WARM_UP_BATCH[self.extra_buffers], llm.n_batch)))
        except BaseException:
            llm.close()
            raise
        return draft

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode(errors="replace")

    def tokenize(self, text: str) -> list[int]:
        add_bos = not (self.bos_token and text.startswith(self.bos_token))
        return self.llm.tokenize(text.encode(), add_bos=add_bos, special=True)

    def detokenize(self, tokens: list[int]) -> str:
        check_vocabulary(tokens, self.llm.n_vocab())
        return self.llm.detokenize(tokens, special=True).decode(errors="replace")

    def _generator(self) -> Batcher:
        if self._batcher is None:
            raise BackendError("this model only computes embeddings; it cannot generate")
        return self._batcher

    def image_prompt(self, text: str, images: list[bytes]) -> ImagePrompt:
        if self._projector is None:
            raise BackendError("this model has no vision projector, so it cannot take images; send text")
        starts_with_bos = bool(self.bos_token) and text.startswith(self.bos_token)
        return self._projector.prompt(text, images, add_special=not starts_with_bos)

    def add(self, seq: int, tokens: list[int], sampling: dict[str, Any], fmt: str | dict | None,
            draft: bool = True, images: ImagePrompt | None = None) -> None:
        if images is None:  # (an image's positions stand as negative ids: llama_vision.py)
            check_vocabulary(tokens, self.llm.n_vocab())
        self._generator().add(seq, tokens, sampling, self._grammar(fmt), draft, images)

    def cancel(self, seq: int) -> None:
        self._generator().cancel(seq)

    def step(self) -> list[tuple[int, str, bool]]:
        return self._generator().step()

    @property
    def busy(self) -> bool:
        return self._batcher is not None and self._batcher.busy

    def reused(self, seq: int) -> int:
        return self._generator().reused.get(seq, 0)

    def drafts(self, seq: int) -> tuple[int, int]:
        return self._generator().drafts.take(seq)

    def force(self, seq: int, text: str) -> bool:
        return self._generator().force(seq, self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def stream(self, tokens: list[int], sampling: dict[str, Any], fmt: str | dict | None,
               images: ImagePrompt | None = None) -> Iterator[str]:
        # One sequence through the batch path; the runner calls this only while no other sequence runs, for
        # log probabilities of each token: without drafts, whose rows would move the logits logprobs() reads.
        self.add(ALONE, tokens, sampling, fmt, draft=False, images=images)
        try:
            while True:
                for _, text, ended in self.step():
                    if ended:
                        return
                    yield text
        finally:
            self.cancel(ALONE)

    def logprobs(self, top: int) -> dict[str, Any]:
        # Until the stream resumes (and decodes this token), its row of logits is the one it was sampled from.
        token, row = self._generator().last(ALONE)
        logits = np.ctypeslib.as_array(row, shape=(self.llm.n_vocab(),))
        return token_entry(log_softmax(logits), token, top,
                           lambda token: self.llm.detokenize([token], special=True))

    def fill_in_middle(self, prefix: str, suffix: str) -> list[int]:
        # The prefix-suffix-middle order llama.cpp's server uses for /infill: the model writes the middle.
        vocab = self.llm._model.vocab
        pre, suf, mid = (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab),
                         llama_cpp.llama_vocab_fim_mid(vocab))
        if min(pre, suf, mid) < 0:
            raise BackendError("this model has no fill-in-the-middle tokens, so it cannot take a suffix")

        def text(part: str) -> list[int]:
            return self.llm.tokenize(part.encode(), add_bos=False, special=False) if part else []

        bos = self.llm.token_bos()
        start = [bos] if bos >= 0 and llama_cpp.llama_vocab_get_add_bos(vocab) else []
        return [*start, pre, *text(prefix), suf, *text(suffix), mid]

    @staticmethod
    def _grammar(fmt: str | dict | None) -> tuple[str, str] | None:
        """The GBNF grammar and its root rule for a format."""
        if fmt is None:
            return None
        if fmt == "json":
            grammar = LlamaGrammar.from_string(llama_cpp.llama_grammar.JSON_GBNF, verbose=False)
            return grammar._grammar, grammar._root
        if isinstance(fmt, dict):
            try:
                grammar = LlamaGrammar.from_json_schema(json.dumps(fmt), verbose=False)
                return grammar._grammar, grammar._root
            except (ValueError, KeyError, TypeError, NotImplementedError, AssertionError, RecursionError) as exc:
                # (llama-cpp-python's converter asserts what it does not know: {"type": "nope"}, a bad pattern)
                raise BackendError(f"cannot turn this JSON schema into a grammar: {exc!r}") from exc
        raise BackendError(f"format must be \"json\" or a JSON schema object, not {fmt!r}")

    def embed(self, texts: list[str], truncate: bool, context: int,
              stop: Callable[[], bool] = never) -> tuple[list[list[float]], int]:
        # Made on first use: a runner that only generates never pays for its KV cache.
        if self._embedder is None:
            self._embedder = Embedder(self.llm, self._params["n_threads_batch"])
        return self._embedder.embed(texts, truncate, context, stop)

    def rerank(self, query: str, documents: list[str], truncate: bool, context: int,
               stop: Callable[[], bool] = never) -> tuple[list[float], int]:
        if not isinstance(self._embedder, Ranker):  # a causal reranker makes its rerank context on first use
            self._embedder = Ranker(self.llm, self._params["n_threads_batch"])
        return self._embedder.rank(query, documents, truncate, context, stop)

    @property
    def _tiers(self) -> Tiers | None:
        return self._batcher.tiers if self._batcher is not None else None

    def memory(self) -> dict[str, int]:
        return self._tiers.memory() if self._tiers is not None else {}

    def unaccounted_memory(self) -> int:
        # The RAM tier's cap is reserved in the budget from the start: what it has not filled yet.
        ram = self._tiers.ram if self._tiers is not None else None
        return ram.cap - ram.used if ram is not None else 0

    def close(self) -> None:
        if self._embedder is not None:  # its context goes before the weights it runs on
            self._embedder.close()
        if self._batcher is not None:
            self._batcher.close()
        if self._draft is not None:
            self._draft.close()
        if self._projector is not None:
            self._projector.close()
        self.llm.close()


BACKEND = LlamaCppBackend
