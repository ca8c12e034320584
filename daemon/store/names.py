"""Model names and file paths: parsing, validation, canonical forms.

A model name is one of
  hf.co/{org}/{repo}[:{tag}]   (huggingface.co/... is the same host)
  {org}/{repo}[:{tag}]         (a Hugging Face repo; stored as hf.co/{org}/{repo}:{tag})
  {name}[:{tag}]               (a local name: `r1 import`, `r1 cp`, the catalog's short names,
                               or a model of Ollama's library: llama3.1, qwen3:8b)
  registry.ollama.ai/{namespace}/{model}[:{tag}]   (Ollama's registry; its `library` namespace
                               is the plain local name, as Ollama shows it)
with `latest` as the tag when none is given, as in Ollama. Matching is case-insensitive,
as on the Hub. Names never become file system paths (the store keys files by digest), but
they are validated strictly anyway so nothing a client sends can look like a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..errors import BadRequest

HF_HOST = "hf.co"
HOST_ALIASES = {"hf.co": HF_HOST, "huggingface.co": HF_HOST}
OLLAMA_HOST = "registry.ollama.ai"
OLLAMA_LIBRARY = "library"  # Ollama's namespace for its own models
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 350

# Hub repo and org names: letters, digits, '-', '_', '.'; no leading '.' or '-', at most 96.
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,95}")
# Tags are quantization labels or file names (issue: `:Q4_K_M`, `:model-Q8_0.gguf`).
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class InvalidNameError(BadRequest, ValueError):
    """A model name or file path that r1 refuses; the message says why and what is allowed."""


@dataclass(frozen=True)
class ModelName:
    model: str
    tag: str = DEFAULT_TAG
    org: str | None = None  # the Hub organization, or with `registry` the registry's namespace
    registry: str | None = None  # OLLAMA_HOST for names given with it; None: hf.co when org is set

    @property
    def is_hf(self) -> bool:
        return self.org is not None and self.registry is None

    @property
    def repo_id(self) -> str:
        """The Hub repo id, `org/repo`; only for Hugging Face names."""
        if not self.is_hf:
            raise ValueError(f"{self} is not a Hugging Face repo")
        return f"{self.org}/{self.model}"

    @property
    def key(self) -> str:
        """What two names must share to be the same model (case-insensitive)."""
        return str(self).lower()

    def __str__(self) -> str:
        base = f"{self.registry or HF_HOST}/{self.org}/{self.model}" if self.org is not None else self.model
        return f"{base}:{self.tag}"


def _check_part(part: str, what: str, text: str) -> str:
    if part in (".", "..") or ".." in part:
        raise InvalidNameError(f"invalid model name {text!r}: '..' is not allowed in a name")
    if not _PART.fullmatch(part):
        raise InvalidNameError(
            f"invalid model name {text!r}: the {what} {part!r} must be 1-96 letters, digits, "
            "'-', '_' or '.', starting with a letter, digit or '_'"
        )
    return part


def parse_name(text: str) -> ModelName:
    """Parse and validate a model name; raise InvalidNameError with a reason otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidNameError("a model name is required, e.g. 'smollm2:135m' or 'hf.co/org/repo:Q4_K_M'")
    text = text.strip()
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"invalid model name: longer than {MAX_NAME_LENGTH} characters")
    if "\\" in text or "\x00" in text or any(c.isspace() for c in text):
        raise InvalidNameError(f"invalid model name {text!r}: no spaces, backslashes or control characters")

    if any(part in (".", "..") for part in re.split(r"[/:]", text)):
        raise InvalidNameError(f"invalid model name {text!r}: '.' and '..' are not allowed in a name")

    path, sep, tag = text.rpartition(":")
    if not sep or "/" in tag:  # the colon, if any, belongs to the path (never valid) or is absent
        path, tag = text, DEFAULT_TAG
    elif not _TAG.fullmatch(tag) or ".." in tag:
        raise InvalidNameError(
            f"invalid model name {text!r}: the tag {tag!r} must be 1-128 letters, digits, "
            "'-', '_' or '.', starting with a letter, digit or '_'"
        )

    parts = path.split("/")
    if parts[0].lower() == OLLAMA_HOST:
        if len(parts) != 3:
            raise InvalidNameError(f"invalid model name {text!r}: expected {OLLAMA_HOST}/{{namespace}}/{{model}}[:{{tag}}]")
        namespace = _check_part(parts[1], "namespace", text)
        model = _check_part(parts[2], "name", text)
        if namespace.lower() == OLLAMA_LIBRARY:
            return ModelName(model=model, tag=tag)
        return ModelName(model=model, tag=tag, org=namespace, registry=OLLAMA_HOST)
    if parts[0].lower() in HOST_ALIASES:
        if len(parts) != 3:
            raise InvalidNameError(f"invalid model name {text!r}: expected hf.co/{{org}}/{{repo}}[:{{tag}}]")
        parts = parts[1:]
    if len(parts) == 1:
        return ModelName(model=_check_part(parts[0], "name", text), tag=tag)
    if len(parts) == 2:
        org = _check_part(parts[0], "organization", text)
        return ModelName(model=_check_part(parts[1], "repository", text), tag=tag, org=org)
    raise InvalidNameError(
        f"invalid model name {text!r}: use 'name[:tag]', 'org/repo[:tag]', 'hf.co/org/repo[:tag]' "
        f"or '{OLLAMA_HOST}/namespace/model[:tag]'"
    )


def safe_relpath(path: str) -> PurePosixPath:
    """A file path inside a model (from a repo listing or a folder) that stays inside its snapshot."""
    if not isinstance(path, str) or not path or "\x00" in path or "\\" in path:
        raise InvalidNameError(f"invalid file path {path!r} in model")
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise InvalidNameError(f"invalid file path {path!r} in model: it must be relative and stay inside the model")
    return pure
