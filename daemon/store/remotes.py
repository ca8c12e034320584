"""Remote engines as the store records them: where an OpenAI- or Ollama-dialect server is, and where
its key comes from (never the key itself: an environment variable's name, or a file of r1's own).

Remote models are ordinary store names whose manifest has no files and the format "remote"; their
source says which remote and which upstream model (`remote_manifest`). Prices belong to the upstream
model, not to a local name, so they are kept apart, keyed "REMOTE:upstream-id".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..metadata.facts import ModelFacts
from .manifest import Manifest, Overrides

DIALECTS = ("openai", "ollama")


@dataclass(frozen=True)
class Remote:
    name: str
    urls: tuple[str, ...]  # one engine behind a pool: each serves the same models
    dialect: str = "openai"
    key_env: str | None = None  # the daemon's environment variable that holds the key
    key_file: str | None = None  # a file in $R1_HOME/remotes/, mode 0600
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (e.g. an organisation)
    ca_file: str | None = None  # a private CA's certificates, for TLS to it

    def to_row(self) -> dict[str, Any]:
        return {"name": self.name, "urls": json.dumps(list(self.urls)), "dialect": self.dialect,
                "key_env": self.key_env, "key_file": self.key_file, "headers": json.dumps(self.headers),
                "ca_file": self.ca_file}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Remote:
        return cls(row["name"], tuple(json.loads(row["urls"])), row["dialect"], row["key_env"], row["key_file"],
                   json.loads(row["headers"]), row["ca_file"])


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, output_tokens: int) -> float:
        return (prompt_tokens * self.input + output_tokens * self.output) / 1_000_000


def remote_manifest(remote: str, upstream_id: str, context_length: int | None,
                    overrides: Overrides | None = None) -> Manifest:
    return Manifest((), ModelFacts(format="remote", context_length=context_length), overrides or Overrides(),
                    {"remote": remote, "model": upstream_id})


def remote_of(manifest: Manifest) -> tuple[str, str] | None:
    """(remote, upstream model id) of a remote model; None for a local one."""
    if manifest.format != "remote" or not manifest.source:
        return None
    return manifest.source["remote"], manifest.source["model"]
