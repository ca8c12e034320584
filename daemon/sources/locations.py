"""Where each tool keeps its models by default, computed from an environment and a home directory
passed in (daemon/config.py passes the real ones: only it reads os.environ), so the CLI computes
them with the user's environment and tests with theirs."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

TOOLS = ("ollama", "hf", "lmstudio")
OLLAMA_SERVICE_STORE = Path("/usr/share/ollama/.ollama/models")  # Linux's install script runs a system user


def default_roots(env: Mapping[str, str], home: Path, platform: str = sys.platform) -> dict[str, list[Path]]:
    """Each tool's candidate roots, most likely first: use the first that exists (first_existing)."""
    home = Path(home)
    ollama = [Path(env["OLLAMA_MODELS"])] if env.get("OLLAMA_MODELS") else [home / ".ollama" / "models"]
    if not env.get("OLLAMA_MODELS") and platform.startswith("linux"):
        ollama.append(OLLAMA_SERVICE_STORE)
    return {"ollama": ollama, "hf": [_hf_hub_cache(env, home)],
            "lmstudio": [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]}


def first_existing(roots: list[Path]) -> Path:
    """The first of `roots` that is a folder, else the first (so an error names where r1 looked first)."""
    return next((root for root in roots if root.is_dir()), roots[0])


def _hf_hub_cache(env: Mapping[str, str], home: Path) -> Path:
    """As huggingface_hub computes it: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub."""
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    if env.get("HUGGINGFACE_HUB_CACHE"):  # the older name, still honoured by huggingface_hub
        return Path(env["HUGGINGFACE_HUB_CACHE"])
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]) / "hub"
    cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else home / ".cache"
    return cache / "huggingface" / "hub"
