"""How much memory a model will take once loaded, from its metadata alone.

    weights      the model files (llama.cpp maps them and touches every page; MLX loads them)
    KV cache     2 (K and V) x layers x num_ctx x KV heads x head size x the element's bytes (f16: 2;
                 kv_cache_type q8_0 and q4_0 store blocks of 32: 34 and 18 bytes), for each sequence slot
                 (R1_NUM_PARALLEL): a runner holds num_ctx tokens per slot
    compute      llama.cpp's scratch buffers, which grow with the vocabulary (the logits), and
                 with each slot by the logits of one more output
    runtime      the runner process itself: Python, the backend library, the tokenizer; and its
                 chat template renderer (templates/renderer.py: Python and Jinja, 23 MiB at rest)
    repacked     with llama.cpp's extra buffer types on, a second copy of the weights it lays out
                 for faster CPU kernels (AMX tiles, AVX2 or Arm blocks); the mapped file stays too
    projector    a vision model's projector (its mmproj file, loaded whole by llama.cpp's mtmd) and the
                 compute buffer it encodes an image in (PROJECTOR_COMPUTE)
    kv_ram       a GGUF runner's RAM tier of KV cells (R1_KV_CACHE_RAM, backends/kv_tiers.py), reserved
                 whole from the load on (the scheduler sets it: what the budget holds of it)

The constants were measured with benchmarks/memory_estimate.py on Gemma 3 270M (262k
vocabulary) and SmolLM2 135M (49k) at num_ctx 2048 to 32768 on llama.cpp's CPU build: the
runner's resident size grew by exactly the KV formula per token of context, and what was
left over beyond the weights fitted runtime + compute below. With extra buffers on, Gemma's
runner grew by its repacked types exactly: 12.7 MiB of Q4_K on an AVX-512 EPYC, and about
200 MiB on an AMX Xeon, where the tied output matrix (Q8_0) is repacked too. With several
slots (one llama.cpp context of num_ctx x slots tokens, n_seq_max = slots), Gemma's context
grew by the KV formula per slot plus 2.6 MiB per slot at num_ctx 2048 and 4096 alike, 1 to 8
slots: about 10 bytes per vocabulary entry. Once a runner is up, the scheduler uses its
measured size instead.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from .gpu_fit import Layers
from .metadata import ModelFacts

MiB = 1024 * 1024
KV_BYTES = 2  # f16 K and V entries, llama.cpp's default and MLX's for bf16/f16 and quantized models
RENDERER = 23 * MiB  # the runner's template renderer, started with it (a spare joins it under load)
RUNTIME = {"gguf": 44 * MiB + RENDERER, "mlx": 85 * MiB + RENDERER}
# Bytes per K or V element of llama.cpp's cache types (ggml's block sizes: 32 values with a scale).
KV_ELEMENT_BYTES: dict[str, float] = {"f16": KV_BYTES, "q8_0": 34 / 32, "q4_0": 18 / 32}
COMPUTE_BASE = 16 * MiB
COMPUTE_PER_VOCAB = 183  # bytes of llama.cpp scratch per vocabulary entry, at the default n_batch 512
DEFAULT_VOCAB = 128_000  # for models imported before r1 recorded the vocabulary size
COMPUTE_PER_SLOT_VOCAB = 10  # bytes per vocabulary entry that each further slot adds (its logits)
EMBED_LOGITS = 256 * MiB  # backends/llama_embed.py's LOGITS_BYTES: the logits of one chunk of tokens
# mtmd's compute buffer for one image, beyond the projector's file. Not measured here (this machine has no
# vision runner to measure): llama.cpp logs 121 MiB on the GPU and 9 MiB on the host for Gemma 3 4B's
# projector at its 896x896 images; a modest round figure above that.
PROJECTOR_COMPUTE = 160 * MiB


class Estimate(NamedTuple):
    weights: int
    kv_cache: int
    compute: int
    runtime: int
    repacked: int = 0
    slots: int = 1  # sequence slots counted in kv_cache and compute
    kv_ram: int = 0
    projector: int = 0  # the vision projector's file and compute buffer
    draft: int = 0  # a draft model's weights, cells for as many slots, and compute (daemon/draft.py)

    @property
    def total(self) -> int:
        return (self.weights + self.kv_cache + self.compute + self.runtime + self.repacked + self.kv_ram
                + self.projector + self.draft)


def kv_cache_bytes(facts: ModelFacts, num_ctx: int, element: float = KV_BYTES) -> int:
    layers = facts.block_count or 0
    kv_heads = facts.head_count_kv or facts.head_count or 0
    width = (facts.key_length or 0) + (facts.value_length or 0)
    return round(layers * num_ctx * kv_heads * width * element)


def estimate(facts: ModelFacts, weights: int, num_ctx: int, repacked_types: Collection[str] = (),
             slots: int = 1, kv_type: str = "f16", projector: int = 0) -> Estimate:
    """The memory a runner for this model with `slots` sequences of `num_ctx` tokens each will need;
    `repacked_types` are the weight types llama.cpp repacks on this machine (kernels.ExtraBuffers),
    none when that is off; `kv_type` is a GGUF runner's KV cache type (KV_ELEMENT_BYTES); `projector` the
    size of a vision model's projector file (not in `weights`)."""
    fmt = facts.format
    vocab = facts.vocab_size or DEFAULT_VOCAB
    compute = COMPUTE_BASE
    if fmt == "gguf":
        compute += COMPUTE_PER_VOCAB * vocab + COMPUTE_PER_SLOT_VOCAB * vocab * (slots - 1)
    if fmt == "mlx":  # MLX keeps the cache in the weights' float type: 4 bytes for an unquantized float32 model
        element: float = 4 if facts.quantization == "F32" else KV_BYTES
    else:
        element = KV_ELEMENT_BYTES[kv_type]
    repacked = sum(size for kind, size in (facts.matmul_weights or {}).items() if kind in repacked_types)
    return Estimate(weights, slots * kv_cache_bytes(facts, num_ctx, element), compute, RUNTIME.get(fmt, RUNTIME["gguf"]),
                    repacked, slots, projector=projector + PROJECTOR_COMPUTE if projector else 0)


def layers(facts: ModelFacts, one: Estimate) -> Layers:
    """A GGUF model's estimate for one slot by where llama.cpp can put it (gpu_fit.py). The files give no
    per-layer sizes, so the token embeddings are vocabulary x width at the model's mean bytes per parameter
    and the rest is shared evenly by the layers; an untied output matrix is counted in them as well as in
    `output`, which errs toward keeping layers on the host."""
    count = max(1, facts.block_count or 1)
    per_parameter = one.weights / facts.parameter_count if facts.parameter_count else 0
    embeddings = min(one.weights, round((facts.vocab_size or 0) * (facts.embedding_length or 0) * per_parameter))
    each, extra = divmod(one.weights - embeddings, count)
    weights = tuple(each + (1 if i < extra else 0) for i in range(count))
    kv_per_layer = one.kv_cache // (one.slots * count)
    # The host keeps the rest: token embeddings, compute, runtime, repacked copies and any companion file.
    return Layers(weights, embeddings, kv_per_layer, one.compute,
                  one.total - sum(weights) - count * kv_per_layer * one.slots)


def slots_that_fit(one: int, per_slot: int, budget: int, most: int) -> int:
    """How many slots, up to `most` and at least 1, a runner gets: as many as fit the memory budget
    when one slot takes `one` bytes in all and each further slot `per_slot` more."""
    if per_slot <= 0:
        return most
    return max(1, min(most, 1 + (budget - one) // per_slot))


def embedding_context(facts: ModelFacts, num_ctx: int) -> int:
    """What a GGUF runner's first embedding request adds (backends/llama_embed.py): a context with a KV
    cache of its own, and the logits of one chunk of tokens, which llama.cpp holds twice. Measured on
    Gemma 3 270M: 533 MiB at num_ctx 768, 599 MiB at 4096; this gives 542 and 600."""
    vocab = facts.vocab_size or DEFAULT_VOCAB
    return kv_cache_bytes(facts, num_ctx) + 2 * min(EMBED_LOGITS, 4 * vocab * num_ctx) + COMPUTE_BASE


def human(size: int) -> str:
    """GiB with one decimal, as error messages about the budget say it."""
    return f"{size / 1024**3:.1f} GiB" if size >= 1024**3 else f"{size / MiB:.0f} MiB"
