"""What a model is made of: its files (path, digest, size), what they say about themselves (the
facts), what `r1 create` set on top (the overrides), and where a pull got them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..metadata.facts import ModelFacts
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
class Overrides:
    """What `r1 create` set (a Modelfile's TEMPLATE, SYSTEM, PARAMETER, MESSAGE, LICENSE and DRAFT lines).
    None where it set nothing, so the model's own facts (its chat template, its license) apply."""

    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None  # checked runner options, e.g. {"temperature": 0.7, "stop": [...]}
    messages: list[dict[str, str]] | None = None  # [{"role", "content"}], put before every chat's own
    license: str | None = None
    draft: str | None = None  # DRAFT: the draft model's name when it was set; its files are the manifest's draft/ ones

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Overrides:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class Manifest:
    files: tuple[FileEntry, ...]
    facts: ModelFacts
    overrides: Overrides = field(default_factory=Overrides)
    source: dict[str, str] | None = None  # a pull's {"repo", "commit", "tag"}
    # Hex sha256 of canonical_json(), so identical models share one manifest; a manifest read back
    # from the index keeps the id it was recorded under (see recorded()).
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", hashlib.sha256(self.canonical_json().encode()).hexdigest())

    @classmethod
    def recorded(cls, manifest_id: str, files: tuple[FileEntry, ...], facts: ModelFacts, overrides: Overrides,
                 source: dict[str, str] | None) -> Manifest:
        """A manifest as the index has it. Its id stays the one it was stored under: facts gain fields
        as r1 learns to read more (vocab_size, matmul_weights), so hashing an older manifest's facts
        again would name the same model differently."""
        manifest = cls(files, facts, overrides, source)
        object.__setattr__(manifest, "id", manifest_id)
        return manifest

    @property
    def format(self) -> str:
        return self.facts.format

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def weights_id(self) -> str:
        """What a runner loads, as one digest: its files'. Models made from this one with `r1 create`
        (another template, system prompt or parameters) have the same, and so share a runner."""
        return hashlib.sha256(" ".join(sorted(f.digest for f in self.files)).encode()).hexdigest()

    def canonical_json(self) -> str:
        # Facts, source and overrides hashed as one object, as before r1 kept them apart: a model
        # made of the same files with the same settings keeps its id. (Facts follow from the files,
        # so an override can only collide with a fact of the same files: the same model.)
        source = {"source": self.source} if self.source is not None else {}
        body = {
            "format": self.format,
            "files": [{"path": f.path, "digest": f.digest, "size": f.size} for f in self.files],
            "metadata": self.facts.to_dict() | source | self.overrides.to_dict(),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))
