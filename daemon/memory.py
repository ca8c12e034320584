"""How much memory a model will take once loaded, from its metadata alone.

    weights      the model files (llama.cpp maps them and touches every page; MLX loads them)
    KV cache     2 (K and V) x layers x num_ctx x KV heads x head size x 2 bytes (f16)
    compute      llama.cpp's scratch buffers, which grow with the vocabulary (the logits)
    runtime      the runner process itself: Python, the backend library, the tokenizer
    repacked     with llama.cpp's extra buffer types on, a second copy of the weights it lays out
                 for faster CPU kernels (AMX tiles, AVX2 or Arm blocks); the mapped file stays too

The constants were measured with benchmarks/memory_estimate.py on Gemma 3 270M (262k
vocabulary) and SmolLM2 135M (49k) at num_ctx 2048 to 32768 on llama.cpp's CPU build: the
runner's resident size grew by exactly the KV formula per token of context, and what was
left over beyond the weights fitted runtime + compute below. With extra buffers on, Gemma's
runner grew by its repacked types exactly: 12.7 MiB of Q4_K on an AVX-512 EPYC, and about
200 MiB on an AMX Xeon, where the tied output matrix (Q8_0) is repacked too. Once a runner is
up, the scheduler uses its measured size instead.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from .metadata import ModelFacts

MiB = 1024 * 1024
KV_BYTES = 2  # f16 K and V entries, llama.cpp's default and MLX's for bf16/f16 and quantized models
RUNTIME = {"gguf": 44 * MiB, "mlx": 85 * MiB}
COMPUTE_BASE = 16 * MiB
COMPUTE_PER_VOCAB = 183  # bytes of llama.cpp scratch per vocabulary entry, at the default n_batch 512
DEFAULT_VOCAB = 128_000  # for models imported before r1 recorded the vocabulary size
EMBED_LOGITS = 256 * MiB  # backends/llama_embed.py's LOGITS_BYTES: the logits of one chunk of tokens


class Estimate(NamedTuple):
    weights: int
    kv_cache: int
    compute: int
    runtime: int
    repacked: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.runtime + self.repacked


def kv_cache_bytes(facts: ModelFacts, num_ctx: int, element: int = KV_BYTES) -> int:
    layers = facts.block_count or 0
    kv_heads = facts.head_count_kv or facts.head_count or 0
    width = (facts.key_length or 0) + (facts.value_length or 0)
    return layers * num_ctx * kv_heads * width * element


def estimate(facts: ModelFacts, weights: int, num_ctx: int, repacked_types: Collection[str] = ()) -> Estimate:
    """The memory a runner for this model at this context length will need; `repacked_types` are the
    weight types llama.cpp repacks on this machine (kernels.ExtraBuffers), none when that is off."""
    fmt = facts.format
    vocab = facts.vocab_size or DEFAULT_VOCAB
    compute = COMPUTE_BASE + COMPUTE_PER_VOCAB * vocab if fmt == "gguf" else COMPUTE_BASE
    # MLX keeps the cache in the weights' float type: 4 bytes for an unquantized float32 model.
    element = 4 if fmt == "mlx" and facts.quantization == "F32" else KV_BYTES
    repacked = sum(size for kind, size in (facts.matmul_weights or {}).items() if kind in repacked_types)
    return Estimate(weights, kv_cache_bytes(facts, num_ctx, element), compute, RUNTIME.get(fmt, RUNTIME["gguf"]), repacked)


def embedding_context(facts: ModelFacts, num_ctx: int) -> int:
    """What a GGUF runner's first embedding request adds (backends/llama_embed.py): a context with a KV
    cache of its own, and the logits of one chunk of tokens, which llama.cpp holds twice. Measured on
    Gemma 3 270M: 533 MiB at num_ctx 768, 599 MiB at 4096; this gives 542 and 600."""
    vocab = facts.vocab_size or DEFAULT_VOCAB
    return kv_cache_bytes(facts, num_ctx) + 2 * min(EMBED_LOGITS, 4 * vocab * num_ctx) + COMPUTE_BASE


def human(size: int) -> str:
    """GiB with one decimal, as error messages about the budget say it."""
    return f"{size / 1024**3:.1f} GiB" if size >= 1024**3 else f"{size / MiB:.0f} MiB"
