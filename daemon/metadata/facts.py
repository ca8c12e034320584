"""What r1 knows about a model from its files: the typed facts a manifest keeps, and the readers' error."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


class MetadataError(ValueError):
    """A model file or folder r1 cannot describe; the message names it and says what is wrong.

    Not an HTTP error: the API answers it with a 400 (daemon/api/http.py)."""


@dataclass(frozen=True)
class ModelFacts:
    """What a model's files say about themselves. None where they do not say, or where the model was
    stored by an r1 that did not read that fact yet (the memory estimate has defaults for those)."""

    format: str  # "gguf" or "mlx"
    architecture: str | None = None
    parameter_count: int | None = None
    parameter_size: str | None = None  # "268.10M", "7.6B", as Ollama shows it
    quantization: str | None = None  # "Q4_K_M", "F32", "4bit", "BF16"
    context_length: int | None = None
    chat_template: str | None = None
    name: str | None = None
    license: str | None = None
    family: str | None = None
    # For the memory estimator: weights are the file sizes, the KV cache needs these.
    embedding_length: int | None = None
    block_count: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    key_length: int | None = None
    value_length: int | None = None
    vocab_size: int | None = None  # the output layer's width: llama.cpp's compute buffers grow with it
    # GGUF: bytes of the matrices multiplied by activations, by ggml type ("Q4_K": 13_275_136); the
    # ones llama.cpp repacks for faster CPU kernels take that much again (memory.estimate).
    matmul_weights: dict[str, int] | None = None
    # For capabilities (daemon/capabilities.py): a GGUF's `{arch}.pooling_type` (embedding models
    # name how they pool token vectors), and whether its tokenizer has fill-in-the-middle tokens.
    pooling_type: int | None = None
    fim_tokens: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelFacts:
        """Facts as to_dict() wrote them, by this r1 or an older one (which knew fewer of them)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def model_facts(
    *,
    parameter_count: int | None,
    architecture: str | None,
    embedding_length: int | None,
    head_count: int | None,
    head_count_kv: int | None,
    key_length: int | None,
    value_length: int | None,
    **rest: Any,
) -> ModelFacts:
    """The facts a reader found, with the ones that follow from them filled in."""
    # llama.cpp and transformers use the same defaults: K/V heads = heads, head size = width / heads.
    head_size = embedding_length // head_count if embedding_length and head_count else None
    return ModelFacts(
        **rest,
        architecture=architecture,
        family=architecture,
        parameter_count=parameter_count,
        parameter_size=_size_label(parameter_count),
        embedding_length=embedding_length,
        head_count=head_count,
        head_count_kv=head_count if head_count_kv is None else head_count_kv,
        key_length=head_size if key_length is None else key_length,
        value_length=head_size if value_length is None else value_length,
    )


def _size_label(count: int | None) -> str | None:
    if count is None:
        return None
    return f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.2f}M"


def int_or_none(value: Any) -> int | None:
    if isinstance(value, tuple):  # per-layer values: the largest bounds the memory needed
        value = max(value, default=None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
