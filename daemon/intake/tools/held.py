"""A file another tool already downloaded, found by the sha256 it is named by, so that a pull takes it
from disk instead of the network: Ollama's blobs/sha256-<hex> and the Hugging Face cache's
models--*/blobs/<hex> (LFS files are named by their sha256)."""

from __future__ import annotations

from pathlib import Path

from ...store import Confinement, RefusedFileError, open_regular

TOOL_NAMES = {"ollama": "Ollama's store", "hf": "the Hugging Face cache"}


def find_held(roots: dict[str, list[Path]], sha256: str, size: int) -> tuple[str, Path] | None:
    """(where, path) of a file of `size` bytes named by `sha256` (hex, or "sha256:<hex>"), or None. The name
    is only a claim: the caller hashes the bytes when it takes the file in."""
    hex_digest = sha256.removeprefix("sha256:")
    candidates = [("ollama", root / "blobs" / f"sha256-{hex_digest}") for root in roots.get("ollama", [])]
    for root in roots.get("hf", []):
        if root.is_dir():
            candidates += [("hf", repo / "blobs" / hex_digest) for repo in sorted(root.glob("models--*"))]
    for tool, path in candidates:
        try:
            with open_regular(path, Confinement(path.parent)) as found:  # a regular file in blobs/, not a link out
                if found.status.st_size == size:
                    return TOOL_NAMES[tool], path
        except (OSError, RefusedFileError):  # missing, unreadable or refused: as if it were not there
            continue
    return None
