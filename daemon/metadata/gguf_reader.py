"""GGUF headers: the model's facts and its tensor table, read without loading weights.

Parsed here rather than with `gguf.GGUFReader`: the reader builds a numpy view for every
element of every array, which takes about 26 s on Gemma 3's 262,144-token vocabulary, while
skipping the arrays we do not need takes a fraction of a second. The `gguf` package still
names the file and tensor types.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .facts import MetadataError, ModelFacts, int_or_none, model_facts, str_or_none

# GGUF value types -> struct format; 8 (string) and 9 (array) are read apart.
_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# Numeric arrays up to this length are kept (per-layer head counts); longer ones (vocabularies) are skipped.
_MAX_KEPT_ARRAY = 4096
_GGML_MAX_DIMS = 4
_DEFAULT_ALIGNMENT = 32
# Fill-in-the-middle: the token ids a GGUF may name (current and older keys), else the token texts
# llama.cpp looks for in the vocabulary (Qwen, StarCoder, Granite, GLM, DeepSeek, CodeLlama spellings).
_FIM_KEYS = (("fim_pre", "fim_suf", "fim_mid"), ("prefix", "suffix", "middle"))
_FIM_TEXTS = (
    ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<|code_prefix|>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>"),
    ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<|code_suffix|>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>"),
    ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<|code_middle|>", "<｜fim▁end｜>", "<MID>", "▁<MID>"),
)


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
    fim_tokens: bool  # the tokenizer can fill in the middle
    vocabulary: tuple[int, int]  # where the token texts are in the file


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
    vocabulary = (0, 0)  # where the token texts are in the file: skipped, but searched for FIM tokens
    for _ in range(kv_count):
        key = cur.string()
        (vtype,) = cur.take("I")
        start = cur.pos
        kv[key] = cur.value(vtype)
        if key == "tokenizer.ggml.tokens":
            vocabulary = (start, cur.pos)
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
    return _GGUFHeader(kv, tensors, data_start, size, _has_fim_tokens(cur, kv, vocabulary), vocabulary)


def _has_fim_tokens(cur: _Cursor, kv: dict[str, Any], vocabulary: tuple[int, int]) -> bool:
    """Whether prefix, suffix and middle tokens are all there: by id, or by text in the vocabulary."""
    if any(all(f"tokenizer.ggml.{name}_token_id" in kv for name in names) for names in _FIM_KEYS):
        return True
    length = struct.Struct(cur.order + "Q")

    def in_vocabulary(text: str) -> bool:
        # A GGUF string is its length then its bytes: searching for both matches whole tokens only.
        raw = text.encode()
        return cur.buf.find(length.pack(len(raw)) + raw, *vocabulary) >= 0

    return all(any(in_vocabulary(text) for text in texts) for texts in _FIM_TEXTS)


def vocabulary_digest(path: Path) -> str:
    """A digest of what a GGUF's tokenizer turns text into: its model, token texts and special tokens. Two
    files with the same digest tokenize alike (what a draft model needs to guess the model's tokens)."""
    header = _read_gguf_header(path)
    digest = hashlib.sha256()
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        digest.update(f"{key}={header.kv.get(key)!r};".encode())
    with path.open("rb") as f:
        f.seek(header.vocabulary[0])
        digest.update(f.read(header.vocabulary[1] - header.vocabulary[0]))
    return digest.hexdigest()


def read_gguf_metadata(paths: Sequence[Path]) -> ModelFacts:
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

    arch = str_or_none(kv.get("general.architecture"))
    prefix = f"{arch}." if arch else "\0"  # no architecture: no hyperparameter key can match
    count = sum(math.prod(t.dims) for t in tensors)
    return model_facts(
        format="gguf",
        architecture=arch,
        parameter_count=count,
        quantization=_gguf_quantization(kv.get("general.file_type"), tensors),
        context_length=int_or_none(kv.get(prefix + "context_length")),
        chat_template=str_or_none(kv.get("tokenizer.chat_template")),
        pooling_type=int_or_none(kv.get(prefix + "pooling_type")),
        fim_tokens=headers[0].fim_tokens,
        name=str_or_none(kv.get("general.name")),
        license=str_or_none(kv.get("general.license")),
        embedding_length=int_or_none(kv.get(prefix + "embedding_length")),
        block_count=int_or_none(kv.get(prefix + "block_count")),
        head_count=int_or_none(kv.get(prefix + "attention.head_count")),
        head_count_kv=int_or_none(kv.get(prefix + "attention.head_count_kv")),
        key_length=int_or_none(kv.get(prefix + "attention.key_length")),
        value_length=int_or_none(kv.get(prefix + "attention.value_length")),
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
    size = int_or_none(kv.get(prefix + "vocab_size"))
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
