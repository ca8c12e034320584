"""What a pull will fetch and record, wherever the model comes from (the Hub, Ollama's registry)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...store import ModelName, Overrides
from ..quant import Choice, RemoteFile


@dataclass(frozen=True)
class PullPlan:
    name: ModelName  # what the model is stored as
    origin: str  # where it comes from, for people and logs: "org/repo", "registry.ollama.ai/library/llama3.1"
    format: str  # "gguf" or "mlx"
    choice: Choice  # the tag and the files, each with the URL it is fetched from
    source: dict[str, str]  # recorded with the model, so that a later pull can tell whether anything changed
    headers: dict[str, str] = field(default_factory=dict)  # sent with every file request
    overrides: Overrides = field(default_factory=Overrides)  # settings that come with the model
    notes: tuple[str, ...] = ()  # said to the user before the transfer starts

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        return self.choice.files
