"""What a model is made of: its files (path, digest, size) and what r1 knows about it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .blobs import parse_digest
from .names import safe_relpath


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative path inside the model's snapshot, e.g. "model-Q4_K_M.gguf"
    digest: str  # "sha256:<hex>"
    size: int

    def __post_init__(self) -> None:
        safe_relpath(self.path)
        object.__setattr__(self, "digest", parse_digest(self.digest))
        if not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"invalid size {self.size!r} for {self.path}")


@dataclass(frozen=True)
class Manifest:
    format: str  # "gguf" or "mlx"
    files: tuple[FileEntry, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Hex sha256 of the canonical JSON: identical models share one manifest."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def canonical_json(self) -> str:
        body = {
            "format": self.format,
            "files": [{"path": f.path, "digest": f.digest, "size": f.size} for f in self.files],
            "metadata": self.metadata,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))
