"""MLX models (a folder of safetensors, config.json and tokenizer files) through mlx-lm.

Generation drives `mlx_lm.generate.generate_step` rather than `stream_generate`: the runner
does stop strings, limits and cancellation itself, and `stream_generate` adds a final item of
its own after the last token and drops the leading space of a continuation.

MLX picks its device itself (the GPU through Metal where there is one, else the CPU) and
loads weights its own way, so num_gpu, num_thread, use_mmap and num_batch change nothing here.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx_lm
import numpy as np
from mlx_lm.generate import generate_step, generation_stream, wired_limit
from mlx_lm.sample_utils import make_logits_processors, make_sampler
from mlx_lm.tokenizer_utils import StreamingDetokenizer

from .base import Backend, BackendError, check_vocabulary
from .logprobs import token_entry

# Ollama's sampling defaults, as the llama.cpp backend uses them: a model answers alike on both.
DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.1,
            "repeat_last_n": 64, "presence_penalty": 0.0, "frequency_penalty": 0.0}


class MlxBackend(Backend):
    _last: tuple[int, mx.array]  # the token stream() yielded last, and its log probabilities

    def __init__(self, path: Path, load: dict[str, Any]) -> None:
        # mlx_lm.load() downloads from the Hub whatever is not a local path; r1 passes folders only.
        if not Path(path).is_dir():
            raise BackendError(f"{path} is not a folder: an MLX model is a folder of safetensors files")
        try:
            self._model, self._tokenizer, config = mlx_lm.load(str(path), return_config=True)
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

    def tokenize(self, text: str) -> list[int]:
        tokens = self._tokenizer.encode(text, add_special_tokens=False)  # special tokens are parsed
        if self._add_bos and not text.startswith(self.bos_token):
            tokens.insert(0, self._tokenizer.bos_token_id)
        return tokens

    def detokenize(self, tokens: list[int]) -> str:
        check_vocabulary(tokens, len(self._tokenizer._tokenizer))  # added tokens too, unlike vocab_size
        return self._tokenizer.decode(tokens, skip_special_tokens=False)

    def stream(self, tokens: list[int], sampling: dict[str, Any], fmt: str | dict | None) -> Iterator[str]:
        if fmt is not None:
            raise BackendError(
                "the MLX backend cannot constrain output to JSON (format); use a GGUF model for format/JSON schema"
            )
        if not tokens:
            raise BackendError("the prompt is empty: generation needs at least one token")
        sampler, processors = self._sampling(sampling)
        # Without a seed, a fresh one: a request must not continue from the previous one's seeded state.
        mx.random.seed(sampling["seed"] if sampling.get("seed") is not None else random.getrandbits(31))
        eos = self._tokenizer.eos_token_ids
        detokenizer = self._detokenizer()
        steps = generate_step(
            mx.array(tokens), self._model, max_tokens=-1, sampler=sampler, logits_processors=processors
        )
        # As stream_generate does: on Metal, keeps the weights wired in memory while generating.
        with wired_limit(self._model, [generation_stream]):
            for token, logprobs in steps:
                if token in eos:
                    detokenizer.finalize()
                    # A trailing space or incomplete character held back for the next token.
                    rest = detokenizer.last_segment
                    if rest:
                        yield rest
                    return
                detokenizer.add_token(token)
                self._last = (token, logprobs)
                yield detokenizer.last_segment

    def logprobs(self, top: int) -> dict[str, Any]:
        token, logprobs = self._last  # mlx-lm's, already normalised over the vocabulary
        return token_entry(np.array(logprobs.astype(mx.float32)), token, top,
                           lambda t: self._tokenizer.decode([t]).encode())

    def _sampling(self, sampling: dict[str, Any]) -> tuple[Any, list[Any]]:
        s = {**DEFAULTS, **sampling}
        # Ollama's repeat_last_n: 0 turns the penalties off, -1 means the whole context.
        last_n = self.context_length if s["repeat_last_n"] < 0 else s["repeat_last_n"]
        penalize = last_n > 0  # mlx-lm would read a window of 0 as every token
        try:
            sampler = make_sampler(temp=s["temperature"], top_p=s["top_p"], min_p=s["min_p"], top_k=s["top_k"])
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
        return sampler, processors

    def _detokenizer(self) -> StreamingDetokenizer:
        """mlx-lm's streaming detokenizer, started after a special token whose text is discarded.

        Fresh, it drops the leading space of the first text it produces: right for decoding a
        whole text, wrong for a continuation ("The capital is" + " Paris").
        """
        detokenizer = self._tokenizer.detokenizer  # a fresh copy per call
        anchor = next((t for t in (self._tokenizer.eos_token_id, self._tokenizer.bos_token_id) if t is not None), None)
        if anchor is not None:
            detokenizer.add_token(anchor)
            detokenizer.last_segment  # reading it moves the detokenizer past the anchor's text
        return detokenizer

    def memory(self) -> dict[str, int]:
        return {"mlx_active": mx.get_active_memory(), "mlx_peak": mx.get_peak_memory()}

    def unaccounted_memory(self) -> int:
        # On Metal the weights and cache live in GPU buffers, not in the resident set; on the CPU they do.
        return mx.get_active_memory() if mx.metal.is_available() else 0

    def close(self) -> None:
        self._model = self._tokenizer = None
        mx.clear_cache()  # return the freed buffers now, not when MLX next needs memory


BACKEND = MlxBackend
