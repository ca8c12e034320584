"""Other tools' model stores, laid out exactly as each tool lays them out, in a temp dir: Ollama's
store (manifests + sha256-named blobs), the Hugging Face hub cache (refs, snapshots of links into
blobs) and LM Studio's models folder. Small real models: tinymodels' GGUF writer, tinymlx's MLX model.

Each builder returns what a test checks against: the r1 names, files, sizes and sha256s.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .fakeollama import ADAPTER, CONFIG_TYPE, MANIFEST_TYPE, MODEL, PARAMS, PROJECTOR, SYSTEM, TEMPLATE
from .tinymlx import write_mlx_model
from .tinymodels import write_split_gguf, write_tiny_gguf
from .tinyvision import write_tiny_projector

PARAMS_JSON = {"temperature": 0.6, "stop": ["<|im_end|>"], "penalize_newline": True}  # the last: r1 has no such option
SYSTEM_PROMPT = "You are terse."
GO_TEMPLATE = "{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}<|assistant|>"
GO_TEMPLATE_UNCONVERTIBLE = '{{ template "chat" . }}'
BLOB_MODE, DIR_MODE = 0o644, 0o755  # as Ollama and huggingface_hub leave them under a 022 umask


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    return sha256_hex(Path(path).read_bytes())


# --- Ollama: ROOT/manifests/{registry}/{namespace}/{model}/{tag}, ROOT/blobs/sha256-{hex} --------------


@dataclass
class OllamaStore:
    root: Path
    gguf_sha256: str  # the model blob both tiny tags share
    gguf_size: int
    manifests: dict[str, Path] = field(default_factory=dict)  # r1 name -> its manifest
    projector_sha256: str = ""  # the vision projector layer of hf.co/tiny-org/Tiny-GGUF:Q8_0


def ollama_blob(root: Path, data: bytes) -> dict:
    """Write `data` as Ollama does (blobs/sha256-<hex>); return its layer's digest and size."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    path = blobs / f"sha256-{sha256_hex(data)}"
    if not path.exists():
        path.write_bytes(data)
        path.chmod(BLOB_MODE)
    return {"digest": f"sha256:{sha256_hex(data)}", "size": len(data)}


def ollama_manifest(root: Path, registry: str, namespace: str, model: str, tag: str,
                    layers: list[tuple[str, dict]]) -> Path:
    """Write a manifest of (media type, blob) layers as `ollama pull` does."""
    config = ollama_blob(root, json.dumps({"model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
                                           "model_type": "1M", "file_type": "F32", "architecture": "amd64",
                                           "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    body = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": {"mediaType": CONFIG_TYPE, **config},
            "layers": [{"mediaType": media, **blob} for media, blob in layers]}
    path = root / "manifests" / registry / namespace / model / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    path.chmod(BLOB_MODE)
    return path


def ollama_store(root: Path) -> OllamaStore:
    """tiny:latest and tiny:1b share one GGUF blob and the params and system layers (1b adds a Go
    template r1 converts); hf.co/tiny-org/Tiny-GGUF:Q8_0 has a template r1 cannot convert and a
    vision projector; registry.ollama.ai/someone/adapted:v1 applies a LoRA adapter."""
    root = Path(root)
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    gguf = write_tiny_gguf(root / "blobs" / "sha256-partial", name="tiny-ollama")
    data = gguf.read_bytes()
    gguf.unlink()
    model = ollama_blob(root, data)
    params = ollama_blob(root, json.dumps(PARAMS_JSON).encode())
    system = ollama_blob(root, SYSTEM_PROMPT.encode())
    store = OllamaStore(root, sha256_hex(data), len(data))
    reg = "registry.ollama.ai"
    store.manifests["tiny:latest"] = ollama_manifest(root, reg, "library", "tiny", "latest",
                                                     [(MODEL, model), (PARAMS, params), (SYSTEM, system)])
    store.manifests["tiny:1b"] = ollama_manifest(root, reg, "library", "tiny", "1b", [
        (MODEL, model), (TEMPLATE, ollama_blob(root, GO_TEMPLATE.encode())), (PARAMS, params), (SYSTEM, system)])
    other = write_tiny_gguf(root / "blobs" / "sha256-partial", name="tiny-hf", seed=1)
    other_blob = ollama_blob(root, other.read_bytes())
    other.unlink()
    projector = write_tiny_projector(root / "blobs" / "sha256-partial")
    store.projector_sha256 = sha256_hex(projector.read_bytes())
    projector_blob = ollama_blob(root, projector.read_bytes())
    projector.unlink()
    store.manifests["hf.co/tiny-org/Tiny-GGUF:Q8_0"] = ollama_manifest(root, "hf.co", "tiny-org", "Tiny-GGUF", "Q8_0", [
        (MODEL, other_blob), (TEMPLATE, ollama_blob(root, GO_TEMPLATE_UNCONVERTIBLE.encode())), (PROJECTOR, projector_blob)])
    store.manifests["registry.ollama.ai/someone/adapted:v1"] = ollama_manifest(
        root, reg, "someone", "adapted", "v1", [(MODEL, model), (ADAPTER, ollama_blob(root, b"lora"))])
    return store


# --- Hugging Face: ROOT/models--{org}--{repo}/{refs/main, snapshots/{commit}/..., blobs/{etag}} --------


@dataclass
class HFCache:
    root: Path
    main_commit: str
    old_commit: str
    same_commit: str  # a third snapshot whose GGUF is the main one's blob
    main_gguf: tuple[str, int]  # (sha256, size) of tiny-Q4_K_M.gguf at main
    old_gguf: tuple[str, int]  # the same file's older version
    mlx_files: dict[str, tuple[str | None, int]] = field(default_factory=dict)  # name -> (sha256 or None, size)


def git_sha1(data: bytes) -> str:
    """A small (non-LFS) file's etag in the cache: git's blob hash."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hf_snapshot_file(repo: Path, commit: str, path: str, data: bytes, lfs: bool) -> str | None:
    """Put one file in a snapshot as huggingface_hub does: the bytes in blobs/<etag>, a relative link
    to it in snapshots/<commit>/<path>; returns the sha256 the blob's name states (LFS files only)."""
    etag = sha256_hex(data) if lfs else git_sha1(data)
    blob = repo / "blobs" / etag
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        blob.write_bytes(data)
        blob.chmod(BLOB_MODE)
    link = repo / "snapshots" / commit / path
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    return etag if lfs else None


def hf_ref(repo: Path, commit: str, branch: str = "main") -> None:
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / branch).write_text(commit)  # huggingface_hub writes no newline


def hf_cache(root: Path, scratch: Path) -> HFCache:
    """models--tiny-org--Tiny-GGUF with three snapshots: main's tiny-Q4_K_M.gguf, an older commit's
    different one, and one more sharing main's blob; models--mlx-community--tiny-mlx holding an MLX
    model (weights as an LFS blob, config and tokenizer files as git blobs); models--google--bert
    with neither (ignored); `scratch` is where the models are written first."""
    root = Path(root)
    gguf_repo = root / "models--tiny-org--Tiny-GGUF"
    main, old, same = "a" * 40, "b" * 40, "c" * 40
    main_data = write_tiny_gguf(scratch / "main.gguf", name="hf-main", seed=2).read_bytes()
    old_data = write_tiny_gguf(scratch / "old.gguf", name="hf-old", seed=3).read_bytes()
    readme = b"---\nlicense: mit\n---\n# Tiny\n"
    for commit, data in ((main, main_data), (old, old_data), (same, main_data)):
        hf_snapshot_file(gguf_repo, commit, "tiny-Q4_K_M.gguf", data, lfs=True)
        hf_snapshot_file(gguf_repo, commit, "README.md", readme, lfs=False)
    hf_ref(gguf_repo, main)
    cache = HFCache(root, main, old, same, (sha256_hex(main_data), len(main_data)), (sha256_hex(old_data), len(old_data)))

    mlx_repo = root / "models--mlx-community--tiny-mlx"
    folder = write_mlx_model(scratch / "mlx")
    commit = "d" * 40
    for file in sorted(folder.iterdir()):
        data = file.read_bytes()
        lfs = file.suffix == ".safetensors"
        cache.mlx_files[file.name] = (hf_snapshot_file(mlx_repo, commit, file.name, data, lfs), len(data))
    hf_ref(mlx_repo, commit)

    bert = root / "models--google--bert"
    hf_snapshot_file(bert, "e" * 40, "config.json", b'{"model_type": "bert"}', lfs=False)
    hf_ref(bert, "e" * 40)
    (root / ".locks" / "models--google--bert").mkdir(parents=True)
    return cache


# --- LM Studio: ROOT/{publisher}/{repo}/{files} ------------------------------------------------------


@dataclass
class LMStudioTree:
    root: Path
    ggufs: dict[str, list[Path]] = field(default_factory=dict)  # r1 name -> its files (the projector last)
    mlx_folder: Path | None = None
    projector: Path | None = None  # lmstudio-community/Tiny-GGUF's mmproj file


def lmstudio_tree(root: Path) -> LMStudioTree:
    """lmstudio-community/Tiny-GGUF with two quantizations and a vision projector, a split GGUF in
    lmstudio-community/Split-GGUF, and the MLX model mlx-community/tiny-mlx."""
    root = Path(root)
    tree = LMStudioTree(root)
    repo = root / "lmstudio-community" / "Tiny-GGUF"
    repo.mkdir(parents=True)
    q4 = write_tiny_gguf(repo / "Tiny-Q4_K_M.gguf", name="lms-q4", seed=4)
    q8 = write_tiny_gguf(repo / "Tiny-Q8_0.gguf", name="lms-q8", seed=5)
    tree.projector = write_tiny_projector(repo / "mmproj-Tiny-F16.gguf")  # kept with each quantization, never a model
    tree.ggufs["hf.co/lmstudio-community/Tiny-GGUF:Q4_K_M"] = [q4, tree.projector]
    tree.ggufs["hf.co/lmstudio-community/Tiny-GGUF:Q8_0"] = [q8, tree.projector]
    shards = write_split_gguf(root / "lmstudio-community" / "Split-GGUF", "Split-Q8_0", name="lms-split")
    tree.ggufs["hf.co/lmstudio-community/Split-GGUF:Q8_0"] = shards
    tree.mlx_folder = write_mlx_model(root / "mlx-community" / "tiny-mlx")
    return tree


def tree_state(root: Path) -> dict[str, tuple]:
    """(size, mode, mtime_ns, link target, sha256) of everything under root, links not followed."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            link = os.readlink(path) if path.is_symlink() else None
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
            state[str(path.relative_to(root))] = (info.st_size, info.st_mode, info.st_mtime_ns, link, digest)
    return state
