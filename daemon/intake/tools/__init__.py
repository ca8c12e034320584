"""The models another tool already keeps on disk (Ollama's store, the Hugging Face cache, LM Studio's
folder), found by reading that tool's files as it lays them out: nothing here writes or changes them.

`discover(tool, root)` lists what `r1 import --from TOOL` could bring in, each model with the r1 name
it would get, its files (the real file behind each, and its sha256 where the tool names the file by
it) and the settings that come with it. What r1 cannot import is listed too, with the reason.
Where each tool keeps its models by default is daemon/config.py's tool_roots(): the CLI computes
it with the user's environment. importing.py takes the models asked for into the store; held.py
lends a pull a file another tool already downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...config import IMPORT_TOOLS
from ...errors import BadRequest
from .found import Found, NoStoreError, SourceFile
from .hf_cache import discover_hf_cache
from .lmstudio import discover_lmstudio
from .ollama import discover_ollama

_DISCOVER: dict[str, Callable[[Path], list[Found]]] = {
    "ollama": discover_ollama,
    "hf": discover_hf_cache,
    "lmstudio": discover_lmstudio,
}


def discover(tool: str, root: Path) -> list[Found]:
    """Every model `tool` keeps under `root`, sorted by name; NoStoreError when `root` holds none."""
    if tool not in _DISCOVER:
        raise BadRequest(f"unknown tool {tool!r}: r1 imports from {', '.join(IMPORT_TOOLS)}")
    return sorted(_DISCOVER[tool](Path(root)), key=lambda found: (found.name.lower(), found.where))


__all__ = ["Found", "NoStoreError", "SourceFile", "discover"]
