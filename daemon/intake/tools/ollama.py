"""Ollama's store, as `ollama pull` and `ollama create` write it:

  ROOT/manifests/{registry}/{namespace}/{model}/{tag}   a Docker v2 manifest (JSON) whose layers
                                                       name blobs by media type and digest
  ROOT/blobs/sha256-{hex}                              each layer's bytes, named by their sha256

The model layer is the GGUF, kept with its vision projector's layer if any (as `mmproj.gguf`); the
small layers (template, system, params, messages, license) become r1 settings exactly as a pull from
Ollama's registry reads them (intake/ollama_settings.py), checked against their digest as a pull checks them.
Only the files a manifest names are read, each a regular file inside ROOT/blobs (manifests inside
ROOT/manifests): a link that leads elsewhere is refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ...errors import BadRequest, R1Error
from ...metadata.projector import PROJECTOR_FILE
from ...store import Confinement, InvalidNameError, parse_name, read_small
from ...store.blobs import corrupt
from ...store.names import OLLAMA_HOST, OLLAMA_LIBRARY
from ..ollama_manifest import (
    MAX_MANIFEST,
    MAX_SETTING_LAYER,
    Layer,
    OllamaRef,
    kept_layers,
    parse_manifest,
    setting_layers,
)
from ..ollama_settings import settings_from_layers
from .found import Found, NoStoreError, SourceFile, source_file


def discover_ollama(root: Path) -> list[Found]:
    manifests = root / "manifests"
    paths = sorted(p for p in manifests.rglob("*") if p.is_file()) if manifests.is_dir() else []
    paths = [p for p in paths if len(p.relative_to(manifests).parts) == 4 and not p.name.startswith(".")]
    if not paths:
        what = ("holds no manifest" if manifests.is_dir() else
                "does not exist" if not root.exists() else "has no manifests/ folder")
        raise NoStoreError(f"{root} {what}: Ollama's store holds manifests/{{registry}}/{{namespace}}/{{model}}/{{tag}} "
                           "and blobs/sha256-{hex} (by default ~/.ollama/models; OLLAMA_MODELS moves it)")
    return [_model(root, path, *path.relative_to(manifests).parts) for path in paths]


def shown_name(registry: str, namespace: str, model: str, tag: str) -> str:
    """The name `ollama list` shows: deepseek-r1:7b, ns/model:tag, hf.co/org/repo:tag."""
    if registry == OLLAMA_HOST:
        return f"{model}:{tag}" if namespace == OLLAMA_LIBRARY else f"{namespace}/{model}:{tag}"
    return f"{registry}/{namespace}/{model}:{tag}"


def _model(root: Path, path: Path, registry: str, namespace: str, model: str, tag: str) -> Found:
    shown = shown_name(registry, namespace, model, tag)
    try:
        name = str(parse_name(f"{registry}/{namespace}/{model}:{tag}"))
    except InvalidNameError as exc:  # a registry r1 does not name models of
        return Found(shown, "gguf", (), where=str(path), problem=str(exc))
    try:
        return _read(root, path, name, OllamaRef(f"https://{registry}", namespace, model, tag))
    except R1Error as exc:  # a manifest r1 cannot read, a model it cannot run, a blob missing
        return Found(name, "gguf", (), where=str(path), problem=str(exc))
    except OSError as exc:
        return Found(name, "gguf", (), where=str(path), problem=f"cannot read {path}: {exc}")


def _read(root: Path, path: Path, name: str, ref: OllamaRef) -> Found:
    manifest = parse_manifest(read_small(path, MAX_MANIFEST, Confinement(root / "manifests")), ref)
    files = tuple(_layer_file(root, path, layer, ref) for path, layer in kept_layers(manifest, ref))
    contents, notes = [], []
    for kind, layer in setting_layers(manifest):
        data = _setting_layer(root, layer)
        if data is None:
            notes.append(f"left out the {kind} layer: its blob {_blob(root, layer)} is missing or too large")
        else:
            contents.append((kind, data))
    overrides, setting_notes = settings_from_layers(contents)
    notes += setting_notes
    return Found(name, "gguf", files, settings=overrides.to_dict(), notes=tuple(notes), where=str(path))


def _layer_file(root: Path, path: str, layer: Layer, ref: OllamaRef) -> SourceFile:
    """A file of the model (the GGUF, the vision projector): its blob, whole, as the manifest names it."""
    what = "vision projector" if path == PROJECTOR_FILE else "GGUF"
    try:
        found = source_file(path, _blob(root, layer), root / "blobs", lambda _: layer.digest.removeprefix("sha256:"))
    except FileNotFoundError:
        raise BadRequest(f"the model's {what} blob {_blob(root, layer)} is missing from Ollama's store: run `ollama "
                         f"pull {ref.model}:{ref.tag}` (or `ollama rm` it) and try again") from None
    if found.size != layer.size:
        raise BadRequest(f"the model's {what} blob {_blob(root, layer)} holds {found.size} bytes where the manifest "
                         f"says {layer.size}: an interrupted or damaged download; pull it again with Ollama")
    return found


def _blob(root: Path, layer: Layer) -> Path:
    return root / "blobs" / layer.digest.replace(":", "-")


def _setting_layer(root: Path, layer: Layer) -> bytes | None:
    """A settings layer's bytes, checked against its digest as a pull checks them; None when its blob is
    missing or larger than r1 reads. A RefusedFileError for a blob that is not a regular file in
    ROOT/blobs, a CorruptSourceError for bytes that are not the digest's."""
    blob = _blob(root, layer)
    if layer.size > MAX_SETTING_LAYER:
        return None
    try:
        data = read_small(blob, MAX_SETTING_LAYER, Confinement(root / "blobs"))
    except OSError:
        return None
    if "sha256:" + hashlib.sha256(data).hexdigest() != layer.digest:
        raise corrupt(blob, layer.digest)
    return data
