"""What a backend does for a runner: load a model, turn text into tokens, stream tokens back.

The runner (runner/worker.py) does everything common on top of this: chat templates, stop
strings, token limits, cancellation, timings. A backend stays a thin adapter to its library.
Options arrive validated (options/check.py); a backend ignores those its library lacks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

# Ollama's sampling defaults, so a model answers the same way through r1 as through Ollama, on either backend.
SAMPLING_DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.1,
                     "repeat_last_n": 64, "presence_penalty": 0.0, "frequency_penalty": 0.0}


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens two token lists start with alike: what a kept cache can save a prompt."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


class BackendError(Exception):
    """A failure a user can act on (bad file, unsupported option); the message says what to do."""


class Cancelled(Exception):
    """Work stopped between two of its chunks because its client went away (the `stop` a backend was given)."""


def never() -> bool:
    return False


def check_vocabulary(tokens: list[int], size: int) -> None:
    """Token ids from a client (Ollama's `context`) must exist: llama.cpp does not check them."""
    bad = next((t for t in tokens if not 0 <= t < size), None)
    if bad is not None:
        raise BackendError(f"token id {bad} in 'context' is outside this model's vocabulary of {size}; "
                           "send back the context this model returned")


class Backend(ABC):
    #: The model's own chat template (Jinja), or None when it has none.
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    #: Tokens the context holds (num_ctx as loaded).
    context_length: int = 0
    #: Whether the model's weights sit in GPU memory (llama.cpp offload, MLX on Metal).
    on_gpu: bool = False
    #: Where llama.cpp put the model (gpu_fit.Split's fields, and the GPU devices it saw); None elsewhere.
    offload: dict[str, Any] | None = None
    #: llama.cpp's extra buffer types (AMX, repacked weights) in use; None where a backend has none.
    extra_buffers: bool | None = None
    #: CPU threads for generated tokens and for prompts; None where the backend does not choose them.
    threads: tuple[int, int] | None = None

    @abstractmethod
    def __init__(self, path: Path, load: dict[str, Any]) -> None:
        """Load the model. `path` is a GGUF file (first shard) or an MLX folder; `load` holds
        num_ctx, num_gpu, num_thread, use_mmap, num_batch, and the daemon's extra_buffers choice
        (any may be absent). A backend whose first decode may crash runs one before returning."""

    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Tokens for a prompt, special tokens parsed; adds BOS only if the model wants one
        and the text does not already start with it."""

    @abstractmethod
    def detokenize(self, tokens: list[int]) -> str:
        """The text of tokens, special ones written out (Ollama's `context` comes back this way);
        BackendError for an id outside the vocabulary."""

    @abstractmethod
    def stream(self, tokens: list[int], sampling: dict[str, Any], fmt: str | dict | None) -> Iterator[str]:
        """Generate after `tokens`: one item per sampled token, the text it completes ("" while a
        multi-byte character is still incomplete); ends at an end-of-generation token.

        `sampling` holds temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
        presence_penalty, frequency_penalty, seed (any may be absent). `fmt` is "json", a JSON
        schema, or None. The caller stops iterating to end early (limits, stop strings, cancel)."""

    def logprobs(self, top: int) -> dict[str, Any]:
        """The log probability of the token `stream` yielded last, with the `top` likeliest tokens in its
        place (backends/logprobs.py shapes it); called before the stream is resumed."""
        raise BackendError(f"{type(self).__name__} does not give token log probabilities; leave 'logprobs' out")

    def image_prompt(self, text: str, images: list[bytes]) -> Any:
        """A rendered prompt that places each of `images` with a MARKER (llama_vision.py), as an object whose
        `tokens` are the prompt's (an image's positions among them); given to add() or stream() as `images`."""
        raise BackendError("this model has no vision projector, so it cannot take images; send text")

    def fill_in_middle(self, prefix: str, suffix: str) -> list[int]:
        """Tokens of a prompt asking for the text between `prefix` and `suffix`, built with the model's
        fill-in-the-middle tokens."""
        raise BackendError(f"{type(self).__name__} cannot fill in the middle; leave 'suffix' out")

    def embed(self, texts: list[str], truncate: bool, context: int,
              stop: Callable[[], bool] = never) -> tuple[list[list[float]], int]:
        """Unit-length vectors for `texts`, and the tokens evaluated to compute them. An input longer
        than `context` tokens (the request's num_ctx, at most the loaded one) is cut to it when
        `truncate` is on, else refused with a BackendError. `stop` is asked between chunks of the work:
        once it says so, Cancelled."""
        raise BackendError(f"{type(self).__name__} does not compute embeddings")

    def rerank(self, query: str, documents: list[str], truncate: bool, context: int,
               stop: Callable[[], bool] = never) -> tuple[list[float], int]:
        """The relevance of each document to the query, in the documents' order, and the tokens evaluated;
        truncation, `context` and `stop` as for `embed`."""
        raise BackendError(f"{type(self).__name__} does not rerank")

    def memory(self) -> dict[str, int]:
        """Backend-specific memory figures (e.g. MLX active memory), added to the runner's RSS."""
        return {}

    def unaccounted_memory(self) -> int:
        """Bytes the model holds outside the process's resident set (GPU buffers), when known."""
        return 0

    def close(self) -> None:  # noqa: B027  a no-op by default: a backend with nothing to free need not override it
        """Free the model now rather than at process exit."""


class BatchBackend(Backend):
    """A backend that generates for several sequences at once, one batch step at a time.

    The runner's engine loop (runner/worker.py) adds sequences as requests arrive and calls step()
    while busy; it owns stop strings, num_predict, context limits and timings per request, as for one
    sequence. Sequence ids are the runner's to choose (its request ids).
    """

    #: Sequences the model holds at once (the load option num_parallel).
    slots: int = 1

    @abstractmethod
    def add(self, seq: int, tokens: list[int], sampling: dict[str, Any], fmt: str | dict | None,
            draft: bool = True) -> None:
        """Queue a new sequence after `tokens`; later step() calls evaluate its prompt in chunks.
        `sampling` and `fmt` are as for stream(). `draft` False keeps it to one token a step, where the
        backend would otherwise guess ahead (speculative decoding): for a runner that must act on each
        token before the next is made. Raises BackendError for a bad grammar or option before anything is queued."""

    @abstractmethod
    def cancel(self, seq: int) -> None:
        """Drop `seq` now, queued or generating: its slot and KV cells are free at once."""

    @abstractmethod
    def step(self) -> list[tuple[int, str, bool]]:
        """One batch step: a token or more for every generating sequence, and chunks of waiting prompts in the room left.

        Returns (seq, text, ended) for each token a sequence sampled, in order: the text it completes
        ("" while a multi-byte character is incomplete); ended=True at an end-of-generation token,
        after which the sequence is finished and its slot free."""

    @property
    @abstractmethod
    def busy(self) -> bool:
        """Whether any sequence is queued or generating."""

    def force(self, seq: int, text: str) -> bool:
        """Make `seq`'s next tokens those of `text` instead of sampled ones (a thinking budget closes the think
        block this way); False where the backend cannot."""
        return False

    def drafts(self, seq: int) -> tuple[int, int]:
        """Tokens `seq` drafted and drafts it kept (speculative decoding), once it has finished; read once."""
        return 0, 0

    def reused(self, seq: int) -> int:
        """Prompt tokens of `seq` found already evaluated in its slot's cache (prompt_eval_count leaves them
        out); known once `seq` has its slot, until that slot takes another sequence."""
        return 0
