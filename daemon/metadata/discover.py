"""What a path holds: which files make the model `r1 import PATH` names, and their facts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .facts import MetadataError, ModelFacts
from .gguf_reader import read_gguf_metadata
from .mlx_reader import is_mlx_folder, is_mlx_model_file, read_mlx_metadata, top_level_files

WHAT_R1_IMPORTS = (
    "r1 imports a .gguf file (any shard of a split GGUF) "
    "or an MLX model folder with config.json and *.safetensors"
)
_SHARD_NAME = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


def model_files(path: Path) -> tuple[str, list[Path]]:
    """The format and the files `r1 import PATH` brings in."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "gguf", _gguf_shards(path)
        hint = f" (pass its folder, {path.parent})" if is_mlx_folder(path.parent) else ""
        raise MetadataError(f"{path} is not a model file r1 can import{hint}: {WHAT_R1_IMPORTS}")
    if path.is_dir():
        entries = top_level_files(path)
        if is_mlx_folder(path):
            return "mlx", [p for p in entries if is_mlx_model_file(p.name)]
        ggufs = [p.name for p in entries if p.suffix.lower() == ".gguf"]
        if ggufs:
            more = f" and {len(ggufs) - 5} more" if len(ggufs) > 5 else ""
            raise MetadataError(
                f"{path} is a folder of GGUF files: pass the .gguf file itself "
                f"({', '.join(ggufs[:5])}{more})"
            )
        reason = ("config.json is missing" if any(p.suffix == ".safetensors" for p in entries)
                  else "it holds no .gguf file and no *.safetensors weights")
        raise MetadataError(f"{path} is not a model folder r1 can import ({reason}): {WHAT_R1_IMPORTS}")
    raise MetadataError(f"no such file or folder: {path}")


def read_metadata(format: str, files: Sequence[Path]) -> ModelFacts:
    """The facts of a model's files, as model_files() lists them."""
    if not files:
        raise MetadataError("no model files given")
    if format == "gguf":
        return read_gguf_metadata(files)
    if format == "mlx":
        return read_mlx_metadata(Path(files[0]).parent)
    raise MetadataError(f"unknown model format {format!r} (expected gguf or mlx)")


def _gguf_shards(path: Path) -> list[Path]:
    """Every shard of a split GGUF (`-00001-of-0000N.gguf`), in order, given any one of them."""
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
