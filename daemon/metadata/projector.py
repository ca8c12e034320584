"""Vision projectors: the `mmproj` GGUF that turns an image into a language model's input embeddings
(llama.cpp's mtmd loads it beside the model). r1 keeps one with the model it belongs to.

In a manifest the projector is the file whose base name starts with `mmproj`, whatever its source
called it (an Ollama registry layer has no name: r1 calls it `mmproj.gguf`). It is a companion of
the language model, never the model: the model's facts, its path and its tags come from the rest.
A projector is untrusted input like any model file: it must be a GGUF whose `general.architecture`
is `clip` (what llama.cpp's converters write for every projector), read as bounded as model files are.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, TypeVar

from .facts import MetadataError
from .gguf_reader import read_gguf_metadata

PROJECTOR_PREFIX = "mmproj"
PROJECTOR_FILE = "mmproj.gguf"  # the name r1 gives a projector its source does not name
PROJECTOR_ARCHITECTURE = "clip"
DRAFT_FOLDER = "draft/"  # where a Modelfile's DRAFT model's files go in a model (daemon/draft.py)


class _File(Protocol):
    @property
    def path(self) -> str: ...


File = TypeVar("File", bound=_File)


def is_projector(path: str) -> bool:
    """Whether a model file (its path inside the model) is its vision projector."""
    name = path.rsplit("/", 1)[-1].lower()
    return name.startswith(PROJECTOR_PREFIX) and name.endswith(".gguf")


def is_companion(path: str) -> bool:
    """Whether a model file comes with the language model without being part of it."""
    return is_projector(path) or path.startswith(DRAFT_FOLDER)


def projector_among(files: Iterable[File]) -> File | None:
    """The vision projector among a model's files (manifest entries), or None."""
    return next((f for f in files if is_projector(f.path)), None)


def check_projector(path: Path, shown: str) -> None:
    """Refuse a file kept as a projector that is not one; `shown` names it for the user."""
    try:
        architecture = read_gguf_metadata([path]).architecture
    except MetadataError as exc:
        raise MetadataError(f"{shown} is not a vision projector r1 can keep: {exc}") from exc
    if architecture != PROJECTOR_ARCHITECTURE:
        raise MetadataError(
            f"{shown} is not a vision projector: its general.architecture is {architecture!r}, and a projector's "
            f"is {PROJECTOR_ARCHITECTURE!r}; use the mmproj file published with the model, or leave it out"
        )

