"""What a model file says about itself: GGUF headers and MLX folders, read without loading weights.

`r1 import` records this in the manifest; the memory estimator uses the shape numbers.

GGUF headers are parsed here rather than with `gguf.GGUFReader`: the reader builds a numpy
view for every element of every array, which takes about 26 s on Gemma 3's 262,144-token
vocabulary, while skipping the arrays we do not need takes a fraction of a second. The
`gguf` package still names the file and tensor types.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import BadRequest

WHAT_R1_IMPORTS = (
    "r1 imports a .gguf file (any shard of a split GGUF) "
    "or an MLX model folder with config.json and *.safetensors"
)


class MetadataError(BadRequest, ValueError):
    """A model file or folder r1 cannot describe; the message names it and says what is wrong."""


@dataclass(frozen=True)
class ModelMetadata:
    format: str  # "gguf" or "mlx"
    architecture: str | None
    parameter_count: int | None
    parameter_size: str | None  # "268.10M", "7.6B", as Ollama shows it
    quantization: str | None  # "Q4_K_M", "F32", "4bit", "BF16"
    context_length: int | None
    chat_template: str | None
    name: str | None
    license: str | None
    family: str | None
    # For the memory estimator: weights are the file sizes, the KV cache needs these.
    embedding_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    vocab_size: int | None  # the output layer's width: llama.cpp's compute buffers grow with it
    # GGUF: bytes of the matrices multiplied by activations, by ggml type ("Q4_K": 13_275_136); the
    # ones llama.cpp repacks for faster CPU kernels take that much again (memory.estimate).
    matmul_weights: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_files(path: Path) -> tuple[str, list[Path]]:
    """The format and the files `r1 import PATH` brings in."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "gguf", _gguf_shards(path)
        hint = f" (pass its folder, {path.parent})" if _is_mlx_folder(path.parent) else ""
        raise MetadataError(f"{path} is not a model file r1 can import{hint}: {WHAT_R1_IMPORTS}")
    if path.is_dir():
        entries = _top_level_files(path)
        if _is_mlx_folder(path):
            return "mlx", [p for p in entries if is_mlx_model_file(p.name)]
        ggufs = [p.name for p in entries if p.suffix.lower() == ".gguf"]
        if ggufs:
            more = f" and {len(ggufs) - 5} more" if len(ggufs) > 5 else ""
            raise MetadataError(
                f"{path} is a folder of GGUF files: pass the .gguf file itself "
                f"({', '.join(ggufs[:5])}{more})"
            )
        if any(p.suffix == ".safetensors" for p in entries):
            reason = "config.json is missing"
        else:
            reason = "it holds no .gguf file and no *.safetensors weights"
        raise MetadataError(f"{path} is not a model folder r1 can import ({reason}): {WHAT_R1_IMPORTS}")
    raise MetadataError(f"no such file or folder: {path}")


def read_metadata(format: str, files: Sequence[Path]) -> ModelMetadata:
    if not files:
        raise MetadataError("no model files given")
    if format == "gguf":
        return read_gguf_metadata(files)
    if format == "mlx":
        return read_mlx_metadata(Path(files[0]).parent)
    raise MetadataError(f"unknown model format {format!r} (expected gguf or mlx)")


# --- GGUF ---------------------------------------------------------------------------------

_SHARD_NAME = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)

# GGUF value types -> struct format; 8 (string) and 9 (array) are read apart.
_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# Numeric arrays up to this length are kept (per-layer head counts); longer ones (vocabularies) are skipped.
_MAX_KEPT_ARRAY = 4096
_GGML_MAX_DIMS = 4
_DEFAULT_ALIGNMENT = 32


def _gguf_shards(path: Path) -> list[Path]:
    match = _SHARD_NAME.match(path.name)
    if match is None:
        return [path]
    index, count = int(match["index"]), int(match["count"])
    if not 1 <= index <= count:
        raise MetadataError(f"{path} has a split-GGUF name with an impossible shard number")
    suffix = path.name[-len(".gguf"):]
    shards = [path.with_name(f"{match['base']}-{i:05d}-of-{match['count']}{suffix}") for i in range(1, count + 1)]
    missing = [p.name for p in shards if not p.is_file()]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MetadataError(
            f"{path.name} is shard {index} of a GGUF split in {count} files, "
            f"but {', '.join(missing)} {verb} missing from {path.parent}"
        )
    return shards


@dataclass(frozen=True)
class _GGUFTensor:
    name: str
    dims: tuple[int, ...]
    type: int
    offset: int  # from the start of the data section


@dataclass(frozen=True)
class _GGUFHeader:
    kv: dict[str, Any]
    tensors: list[_GGUFTensor]
    data_start: int
    file_size: int


class _Cursor:
    """Reads GGUF header values from a buffer; running off its end means the file is truncated."""

    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf, self.path, self.pos, self.order = buf, path, 0, "<"

    def truncated(self) -> MetadataError:
        return MetadataError(f"{self.path} is truncated: its GGUF header ends early (file is {len(self.buf)} bytes)")

    def take(self, fmt: str) -> tuple[Any, ...]:
        fmt = self.order + fmt
        end = self.pos + struct.calcsize(fmt)
        if end > len(self.buf):
            raise self.truncated()
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos = end
        return values

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise self.truncated()
        self.pos += n

    def string(self) -> str:
        (n,) = self.take("Q")
        start = self.pos
        self.skip(n)
        return self.buf[start : self.pos].decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype, count = self.take("IQ")
            fmt = _SCALAR_FORMATS.get(itype)
            if fmt is not None and count <= _MAX_KEPT_ARRAY:
                return self.take(f"{count}{fmt}")
            self.skip_array(itype, count)
            return None
        fmt = _SCALAR_FORMATS.get(vtype)
        if fmt is None:
            raise MetadataError(f"{self.path} is not a valid GGUF file (unknown value type {vtype} at byte {self.pos})")
        return self.take(fmt)[0]

    def skip_array(self, itype: int, count: int) -> None:
        if itype == _STRING:
            # The hot loop (one pass per vocabulary entry): kept free of method calls.
            length = struct.Struct(self.order + "Q")
            buf, pos, end = self.buf, self.pos, len(self.buf) - 8
            for _ in range(count):
                if pos > end:
                    raise self.truncated()
                pos += 8 + length.unpack_from(buf, pos)[0]
            self.pos = pos
            self.skip(0)  # the last string may itself run past the end
        elif itype == _ARRAY:
            for _ in range(count):
                self.skip_array(*self.take("IQ"))
        elif itype in _SCALAR_FORMATS:
            self.skip(count * struct.calcsize(_SCALAR_FORMATS[itype]))
        else:
            raise MetadataError(f"{self.path} is not a valid GGUF file (unknown array type {itype})")


def _read_gguf_header(path: Path) -> _GGUFHeader:
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise MetadataError(f"{path} is empty")
            if f.read(4) != b"GGUF":
                raise MetadataError(f"{path} is not a GGUF file (bad magic)")
            # mmap: only the header's pages are ever touched, however large the file.
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse_gguf_header(_Cursor(buf, path), size)
    except OSError as exc:
        raise MetadataError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _parse_gguf_header(cur: _Cursor, size: int) -> _GGUFHeader:
    cur.skip(4)
    (version,) = cur.take("I")
    if version & 0xFFFF == 0:  # written on a big-endian machine
        cur.order = ">"
        version = int.from_bytes(version.to_bytes(4, "little"), "big")
    if version not in (2, 3):
        raise MetadataError(f"{cur.path} is GGUF version {version}; r1 reads versions 2 and 3")
    tensor_count, kv_count = cur.take("QQ")
    # Each entry takes at least 24 (tensor) or 13 (key/value) bytes: reject absurd counts before looping.
    if tensor_count * 24 + kv_count * 13 > size:
        raise cur.truncated()
    kv: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cur.string()
        (vtype,) = cur.take("I")
        kv[key] = cur.value(vtype)
    tensors = []
    for _ in range(tensor_count):
        name = cur.string()
        (n_dims,) = cur.take("I")
        if n_dims > _GGML_MAX_DIMS:
            raise MetadataError(f"{cur.path} is not a valid GGUF file (tensor {name!r} has {n_dims} dimensions)")
        dims = cur.take(f"{n_dims}Q")
        ttype, offset = cur.take("IQ")
        tensors.append(_GGUFTensor(name, dims, ttype, offset))
    alignment = kv.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise MetadataError(f"{cur.path} is not a valid GGUF file (alignment {alignment!r})")
    data_start = -(-cur.pos // alignment) * alignment
    return _GGUFHeader(kv, tensors, data_start, size)


def read_gguf_metadata(paths: Sequence[Path]) -> ModelMetadata:
    """One GGUF file, or every shard of a split one in order: metadata from the first, tensors from all."""
    # gguf pulls in numpy (~0.3 s): import it only when a GGUF is actually read.
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    paths = [Path(p) for p in paths]
    if not paths:
        raise MetadataError("no GGUF file given")
    headers = [_read_gguf_header(p) for p in paths]
    kv = headers[0].kv
    split_count = kv.get("split.count")
    if split_count is not None and split_count != len(paths):
        raise MetadataError(f"{paths[0]} is the first of {split_count} GGUF shards, but {len(paths)} file(s) were given")

    tensors: list[_GGUFTensor] = []
    for path, header in zip(paths, headers):
        end = header.data_start
        for t in header.tensors:
            try:
                block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(t.type)]
            except (ValueError, KeyError):
                continue  # a type newer than the installed gguf package: cannot size it, still count it
            end = max(end, header.data_start + t.offset + math.prod(t.dims) // block * type_size)
        if end > header.file_size:
            raise MetadataError(
                f"{path} is truncated: its tensors need {end:,} bytes but the file has {header.file_size:,}"
            )
        tensors += header.tensors

    arch = _str(kv.get("general.architecture"))
    prefix = f"{arch}." if arch else "\0"  # no architecture: no hyperparameter key can match
    count = sum(math.prod(t.dims) for t in tensors)
    return _metadata(
        format="gguf",
        architecture=arch,
        parameter_count=count,
        quantization=_gguf_quantization(kv.get("general.file_type"), tensors),
        context_length=_int(kv.get(prefix + "context_length")),
        chat_template=_str(kv.get("tokenizer.chat_template")),
        name=_str(kv.get("general.name")),
        license=_str(kv.get("general.license")),
        embedding_length=_int(kv.get(prefix + "embedding_length")),
        block_count=_int(kv.get(prefix + "block_count")),
        head_count=_int(kv.get(prefix + "attention.head_count")),
        head_count_kv=_int(kv.get(prefix + "attention.head_count_kv")),
        key_length=_int(kv.get(prefix + "attention.key_length")),
        value_length=_int(kv.get(prefix + "attention.value_length")),
        vocab_size=_gguf_vocab_size(kv, prefix, tensors),
        matmul_weights=_gguf_matmul_weights(tensors),
    )


def _gguf_matmul_weights(tensors: list[_GGUFTensor]) -> dict[str, int]:
    """Bytes by type of the 2-D weights llama.cpp multiplies activations with. The token embedding is
    only looked up, unless the model ties its output layer to it (no output.weight): then llama.cpp
    loads it a second time as that layer's matrix."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    tied = not any(t.name == "output.weight" for t in tensors)
    found: Counter[str] = Counter()
    for t in tensors:
        looked_up = "embd" in t.name and not (tied and t.name == "token_embd.weight")
        if len(t.dims) != 2 or not t.name.endswith(".weight") or looked_up:
            continue
        try:
            kind = GGMLQuantizationType(t.type)
        except ValueError:
            continue  # a type newer than the installed gguf package
        block, type_size = GGML_QUANT_SIZES[kind]
        found[kind.name] += math.prod(t.dims) // block * type_size
    return dict(found)


def _gguf_vocab_size(kv: dict[str, Any], prefix: str, tensors: list[_GGUFTensor]) -> int | None:
    """The vocabulary size: a key some converters write, else the token embedding's second dimension."""
    size = _int(kv.get(prefix + "vocab_size"))
    if size is not None:
        return size
    embedding = next((t for t in tensors if t.name == "token_embd.weight" and len(t.dims) == 2), None)
    return embedding.dims[1] if embedding is not None else None


def _gguf_quantization(file_type: Any, tensors: list[_GGUFTensor]) -> str | None:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

    try:
        name = LlamaFileType(file_type).name
    except ValueError:
        name = "GUESSED"
    if name != "GUESSED":
        return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    # No (known) file type: name the type holding the most bytes of matrix weights, as llama.cpp guesses.
    weight: Counter[str] = Counter()
    for t in tensors:
        try:
            ttype = GGMLQuantizationType(t.type)
        except ValueError:
            continue
        if len(t.dims) >= 2 and t.name.endswith(".weight"):
            block, type_size = GGML_QUANT_SIZES[ttype]
            weight[ttype.name] += math.prod(t.dims) // block * type_size
    return weight.most_common(1)[0][0] if weight else None


# --- MLX (safetensors) --------------------------------------------------------------------

_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_MLX_FILE_SUFFIXES = {".safetensors", ".json", ".jinja", ".tiktoken"}
_MLX_TEXT_FILE = re.compile(r"^(vocab|merges)[\w.-]*\.txt$")


def _top_level_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")), key=lambda p: p.name)


def _is_mlx_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(p.suffix == ".safetensors" for p in _top_level_files(folder))


def is_mlx_model_file(name: str) -> bool:
    return Path(name).suffix in _MLX_FILE_SUFFIXES or name == "tokenizer.model" or bool(_MLX_TEXT_FILE.match(name))


def read_mlx_metadata(folder: Path) -> ModelMetadata:
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise MetadataError(f"{folder}: config.json is missing")
    config = _load_json(config_path)
    if not isinstance(config, dict):
        raise MetadataError(f"{config_path} is not a JSON object")
    weights = [p for p in _top_level_files(folder) if p.suffix == ".safetensors"]
    if not weights:
        raise MetadataError(f"{folder} has no *.safetensors weights")
    tensors: dict[str, dict[str, Any]] = {}
    for path in weights:
        tensors.update(_read_safetensors_header(path))

    # Multimodal configs keep the language model's numbers under text_config.
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}

    def setting(key: str) -> Any:
        value = config.get(key)
        return text_config.get(key) if value is None else value

    quant = config.get("quantization") if isinstance(config.get("quantization"), dict) else None
    if quant is not None and isinstance(quant.get("bits"), int):
        quantization = f"{quant['bits']}bit"
    else:
        quantization = _main_dtype(tensors)
    return _metadata(
        format="mlx",
        architecture=_str(setting("model_type")),
        parameter_count=_mlx_parameter_count(tensors, quant, folder),
        quantization=quantization,
        context_length=_int(setting("max_position_embeddings")),
        chat_template=_mlx_chat_template(folder),
        name=None,
        license=None,
        embedding_length=_int(setting("hidden_size")),
        block_count=_int(setting("num_hidden_layers")),
        head_count=_int(setting("num_attention_heads")),
        head_count_kv=_int(setting("num_key_value_heads")),
        key_length=_int(setting("head_dim")),
        value_length=_int(setting("head_dim")),
        vocab_size=_int(setting("vocab_size")),
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


# --- shared -------------------------------------------------------------------------------


def _metadata(
    *,
    parameter_count: int | None,
    architecture: str | None,
    embedding_length: int | None,
    head_count: int | None,
    head_count_kv: int | None,
    key_length: int | None,
    value_length: int | None,
    **rest: Any,
) -> ModelMetadata:
    # llama.cpp and transformers use the same defaults: K/V heads = heads, head size = width / heads.
    head_size = embedding_length // head_count if embedding_length and head_count else None
    return ModelMetadata(
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


def _int(value: Any) -> int | None:
    if isinstance(value, tuple):  # per-layer values: the largest bounds the memory needed
        value = max(value, default=None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
