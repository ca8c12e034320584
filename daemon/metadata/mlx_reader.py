"""MLX model folders: config.json, *.safetensors and tokenizer files, read without loading weights."""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from .facts import MetadataError, ModelFacts, int_or_none, model_facts, str_or_none

_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_MLX_FILE_SUFFIXES = {".safetensors", ".json", ".jinja", ".tiktoken"}
_MLX_TEXT_FILE = re.compile(r"^(vocab|merges)[\w.-]*\.txt$")


def top_level_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")), key=lambda p: p.name)


def is_mlx_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(p.suffix == ".safetensors" for p in top_level_files(folder))


def is_mlx_model_file(name: str) -> bool:
    return Path(name).suffix in _MLX_FILE_SUFFIXES or name == "tokenizer.model" or bool(_MLX_TEXT_FILE.match(name))


def read_mlx_metadata(folder: Path) -> ModelFacts:
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise MetadataError(f"{folder}: config.json is missing")
    config = _load_json(config_path)
    if not isinstance(config, dict):
        raise MetadataError(f"{config_path} is not a JSON object")
    weights = [p for p in top_level_files(folder) if p.suffix == ".safetensors"]
    if not weights:
        raise MetadataError(f"{folder} has no *.safetensors weights")
    tensors: dict[str, dict[str, Any]] = {}
    for path in weights:
        tensors.update(_read_safetensors_header(path))

    # Multimodal configs keep the language model's numbers under text_config.
    nested = config.get("text_config")
    text_config: dict[str, Any] = nested if isinstance(nested, dict) else {}

    def setting(key: str) -> Any:
        value = config.get(key)
        return text_config.get(key) if value is None else value

    quant = config.get("quantization") if isinstance(config.get("quantization"), dict) else None
    bits = quant.get("bits") if quant is not None else None
    quantization = f"{bits}bit" if isinstance(bits, int) else _main_dtype(tensors)
    return model_facts(
        format="mlx",
        architecture=str_or_none(setting("model_type")),
        parameter_count=_mlx_parameter_count(tensors, quant, folder),
        quantization=quantization,
        context_length=int_or_none(setting("max_position_embeddings")),
        chat_template=_mlx_chat_template(folder),
        name=None,
        license=None,
        embedding_length=int_or_none(setting("hidden_size")),
        block_count=int_or_none(setting("num_hidden_layers")),
        head_count=int_or_none(setting("num_attention_heads")),
        head_count_kv=int_or_none(setting("num_key_value_heads")),
        key_length=int_or_none(setting("head_dim")),
        value_length=int_or_none(setting("head_dim")),
        vocab_size=int_or_none(setting("vocab_size")),
    )


def _read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """The tensor table of a safetensors file: {name: {dtype, shape, data_offsets}}."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise MetadataError(f"{path} is truncated: too short for a safetensors header")
            (length,) = struct.unpack("<Q", head)
            if length > _MAX_SAFETENSORS_HEADER:
                raise MetadataError(f"{path} is not a valid safetensors file: its header claims {length:,} bytes")
            if 8 + length > size:
                raise MetadataError(
                    f"{path} is truncated or not a safetensors file: "
                    f"its header claims {length:,} bytes but the file has {size:,}"
                )
            raw = f.read(length)
    except OSError as exc:
        raise MetadataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise MetadataError(f"{path} is not a valid safetensors file: its header is not JSON") from exc
    if not isinstance(header, dict):
        raise MetadataError(f"{path} is not a valid safetensors file: its header is not a JSON object")
    header.pop("__metadata__", None)
    data_size = size - 8 - length
    for name, info in header.items():
        if not _valid_tensor_entry(info):
            raise MetadataError(f"{path} is not a valid safetensors file: bad entry for tensor {name!r}")
        if info["data_offsets"][1] > data_size:
            raise MetadataError(f"{path} is truncated: tensor {name!r} ends past the end of the file")
    return header


def _valid_tensor_entry(info: Any) -> bool:
    if not isinstance(info, dict) or not isinstance(info.get("dtype"), str):
        return False
    shape, offsets = info.get("shape"), info.get("data_offsets")
    return (
        isinstance(shape, list)
        and all(isinstance(d, int) and d >= 0 for d in shape)
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    )


def _mlx_parameter_count(tensors: dict[str, dict[str, Any]], quant: dict[str, Any] | None, folder: Path) -> int:
    # MLX quantized layers store a U32 `.weight` packing 32/bits values per element,
    # plus `.scales` and `.biases` that are bookkeeping, not parameters.
    packed = {
        name.removesuffix(".weight")
        for name, info in tensors.items()
        if name.endswith(".weight") and info["dtype"] == "U32" and name.removesuffix(".weight") + ".scales" in tensors
    }
    total = 0
    for name, info in tensors.items():
        module, _, leaf = name.rpartition(".")
        count = math.prod(info["shape"])
        if module in packed:
            if leaf != "weight":
                continue
            count = count * 32 // _quant_bits(quant, module, folder)
        total += count
    return total


def _quant_bits(quant: dict[str, Any] | None, module: str, folder: Path) -> int:
    # mlx-lm writes per-layer overrides (mixed-precision recipes) next to the defaults, keyed by module path.
    override = quant.get(module) if quant else None
    bits = override.get("bits") if isinstance(override, dict) else (quant or {}).get("bits")
    if not isinstance(bits, int) or bits <= 0:
        raise MetadataError(f"{folder}: {module} is quantized but config.json gives no quantization bits for it")
    return bits


def _main_dtype(tensors: dict[str, dict[str, Any]]) -> str | None:
    weight: Counter[str] = Counter()
    for info in tensors.values():
        start, end = info["data_offsets"]
        weight[info["dtype"]] += end - start
    return weight.most_common(1)[0][0] if weight else None


def _mlx_chat_template(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MetadataError(f"cannot read {jinja}: {exc}") from exc
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        data = _load_json(path)
        template = data.get("chat_template") if isinstance(data, dict) else None
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
            template = next(
                (t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"), None
            )
        if isinstance(template, str):
            return template
    return None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise MetadataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise MetadataError(f"{path} is not valid JSON: {exc}") from exc
