"""The Hugging Face hub cache (filled by huggingface_hub: mlx-lm, llm-mlx, transformers, `hf download`):

  ROOT/models--{org}--{repo}/refs/{branch}            the commit a branch pointed at when downloaded
  ROOT/models--{org}--{repo}/snapshots/{commit}/...   the repo's files, as links into blobs/
  ROOT/models--{org}--{repo}/blobs/{name}             LFS files named by their sha256, small git
                                                      files by their git sha1 (sha256 unknown)

Each snapshot is a candidate: the one refs/main points at first, named `hf.co/org/repo:TAG` as
`r1 pull` names it; another snapshot adds only the models whose files differ, with the commit in
the tag where the name is taken (`:Q4_K_M-1a2b3c4d`). Every file r1 reads or imports is a regular
file inside the repo's folder (a snapshot's links lead into its blobs/): a link leading out is refused.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ...store import Confinement, RefusedFileError, read_small
from .folders import found_in_folder
from .found import Found, NoStoreError, sha256_named

REPO_PREFIX = "models--"
COMMIT_IN_TAG = 8  # hex digits of an older snapshot's commit put in its tags
MAX_REF = 1024  # bytes of a ref file read: a commit hash


def discover_hf_cache(root: Path) -> list[Found]:
    repos = sorted(root.glob(REPO_PREFIX + "*")) if root.is_dir() else []
    if not repos:
        what = "holds no model repo" if root.is_dir() else "does not exist"
        raise NoStoreError(f"{root} {what}: a Hugging Face cache holds models--{{org}}--{{repo}} folders "
                           "(by default ~/.cache/huggingface/hub; HF_HUB_CACHE or HF_HOME move it)")
    found: list[Found] = []
    for repo in repos:
        found += _repo_models(repo)
    return found


def _repo_models(repo: Path) -> list[Found]:
    parts = repo.name.removeprefix(REPO_PREFIX).split("--")
    if len(parts) != 2:  # a repo without an organization (gpt2): r1 names Hub models hf.co/org/repo
        return []
    base = f"hf.co/{parts[0]}/{parts[1]}"
    found: list[Found] = []
    seen: set[tuple[str, tuple[Path, ...]]] = set()
    for commit, snapshot in _snapshots(repo):
        for model in found_in_folder(snapshot, base, sha256_named, repo):
            key = (model.format, tuple(f.source for f in model.files))
            if key in seen:  # the same blobs as a newer snapshot's: the same model
                continue
            seen.add(key)
            if any(other.name == model.name for other in found):  # older files under a taken name
                base_name, _, tag = model.name.rpartition(":")
                model = replace(model, name=f"{base_name}:{tag}-{commit[:COMMIT_IN_TAG]}",
                                notes=(*model.notes, f"from the older snapshot {commit}: "
                                       f"{model.name} is the one {_first_ref(repo)} points at"))
            found.append(model)
    return found


def _snapshots(repo: Path) -> list[tuple[str, Path]]:
    """(commit, folder) of each snapshot: refs/main's first, then other refs', then the rest by name."""
    snapshots = repo / "snapshots"
    folders = sorted(p for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []
    first = [snapshots / commit for p in _refs(repo) if (commit := _ref_commit(repo, p))]
    ordered = [p for p in first if p in folders]
    ordered += [p for p in folders if p not in ordered]
    return [(p.name, p) for p in dict.fromkeys(ordered)]


def _ref_commit(repo: Path, ref: Path) -> str | None:
    """The commit a ref file names; None for one r1 cannot read as such (not a small regular file there)."""
    try:
        return read_small(ref, MAX_REF, Confinement(repo)).decode("utf-8", errors="replace").strip()
    except (RefusedFileError, OSError):
        return None


def _first_ref(repo: Path) -> str:
    refs = _refs(repo)
    return f"refs/{refs[0].relative_to(repo / 'refs').as_posix()}" if refs else "the first snapshot"


def _refs(repo: Path) -> list[Path]:
    """The ref files, refs/main first."""
    refs = repo / "refs"
    files = [p for p in refs.rglob("*") if p.is_file()] if refs.is_dir() else []
    return sorted(files, key=lambda p: (p.relative_to(refs).as_posix() != "main", str(p)))
