"""LM Studio's models folder: ROOT/{publisher}/{repo}/ as downloaded from the Hub (publisher and repo
are the Hub's org and repo), holding GGUF files (an `mmproj-*.gguf` vision projector among them goes
with each model) or an MLX model folder. Plain files, not named by their hash: sha256 unknown until r1
hashes them. Each file r1 imports is a regular file inside its repo folder: a link that leads out of it
is refused."""

from __future__ import annotations

from pathlib import Path

from .folders import found_in_folder
from .found import Found, NoStoreError


def discover_lmstudio(root: Path) -> list[Found]:
    found: list[Found] = []
    if root.is_dir():
        repos = [p for p in root.glob("*/*") if p.is_dir() and not (p.name.startswith(".") or p.parent.name.startswith("."))]
        for repo in sorted(repos):
            found += found_in_folder(repo, f"hf.co/{repo.parent.name}/{repo.name}", lambda _: None, repo)
    if not found:
        what = "holds no model" if root.is_dir() else "does not exist"
        raise NoStoreError(f"{root} {what}: LM Studio's models folder holds {{publisher}}/{{repo}}/ folders "
                           "with .gguf files or MLX models (by default ~/.lmstudio/models)")
    return found
