"""What discovery finds: a model another tool keeps, as the files and settings r1 would import."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import BadRequest
from ...store import Confinement, open_regular

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class NoStoreError(BadRequest):
    """The folder given is not (or no longer) a store of the tool named, or holds no model of it."""


@dataclass(frozen=True)
class SourceFile:
    path: str  # the file's path inside the r1 model: "model.gguf", "Q4_K_M/x-00001-of-00002.gguf", "config.json"
    source: Path  # the real file to import (symlinks resolved: a blob of the tool's store)
    size: int
    sha256: str | None = None  # hex, where the tool names the file by it (Ollama blobs, HF LFS blobs)
    inside: Path | None = None  # the folder of the tool's store it must stay in (checked again when imported)


@dataclass(frozen=True)
class Found:
    name: str  # the r1 name it would get, canonical as r1 stores it
    format: str  # "gguf" or "mlx"
    files: tuple[SourceFile, ...]
    settings: dict[str, Any] = field(default_factory=dict)  # r1 overrides: system, parameters, template, messages, license
    notes: tuple[str, ...] = ()  # what was left out or changed, for the user
    where: str = ""  # the manifest or folder it came from
    problem: str | None = None  # why r1 cannot import it (then files may be incomplete); None: importable

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def importable(self) -> bool:
        return self.problem is None


def source_file(path: str, file: Path, inside: Path, named: Callable[[Path], str | None] = lambda _: None) -> SourceFile:
    """A file as found: `file` resolved through its links, which must lead inside the folder `inside`
    to a regular file, its size read now; `named` says what the real file's name tells of its sha256.
    A RefusedFileError says why not; an OSError (FileNotFoundError...) that it cannot be opened."""
    with open_regular(file, Confinement(inside)) as opened:
        return SourceFile(path, opened.path, opened.status.st_size, named(opened.path), inside)


def sha256_named(file: Path) -> str | None:
    """The sha256 a content-addressed blob's name states ("<hex>", "sha256-<hex>"), or None."""
    hex_part = file.name.removeprefix("sha256-")
    return hex_part if _SHA256_HEX.fullmatch(hex_part) else None
