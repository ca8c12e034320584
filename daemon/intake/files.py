"""Models from files: `r1 import` (and `r1 create` with a path) brings a local GGUF file (all shards of
a split one, and the vision projector beside it) or an MLX folder into the store; `r1 create` with
uploaded blobs names blobs already in the store as a model's files. Both read the model's facts
from what is stored (stored_facts), as pulls and imports from other tools do."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadRequest
from ..metadata import MetadataError, ModelFacts, model_files, read_metadata
from ..metadata.projector import check_projector, is_companion, is_projector
from ..store import FileEntry, Ingested, Manifest, MissingBlobError, ModelName, ModelRecord, Overrides, Store
from ..store.blobs import parse_digest
from .quant import RemoteFile, projector_for, quant_label

log = logging.getLogger(__name__)

# Progress events, in the shape of Ollama's pull/create progress.
Event = dict[str, Any]


@dataclass(frozen=True)
class ImportResult:
    record: ModelRecord
    how: dict[str, str]  # file path -> "reflinked", "linked", "copied" or "stored"

    def event(self) -> Event:
        return {
            "status": "success",
            "model": self.record.name,
            "digest": self.record.manifest_id,
            "size": self.record.manifest.size,
            "files": [{"path": path, "how": how} for path, how in self.how.items()],
        }


def check_source(path_text: str) -> Path:
    path = Path(path_text)
    if not path.is_absolute():
        raise BadRequest(f"import path must be absolute, got {path_text!r}")
    if not path.exists():
        raise BadRequest(f"no such file or folder: {path}")
    return path


def import_model(
    store: Store, path: Path, model: ModelName, *, link: bool = True, emit: Callable[[Event], None] = lambda e: None,
    overrides: Overrides | None = None,
) -> ImportResult:
    """Hash the files into blobs (a clone or a hard link where possible, never changing the user's
    files: Store.ingest), read their facts, record the model.

    `path` comes from check_source(); the caller validates both arguments before starting.
    `overrides` (template, system, parameters... from `r1 create`) go into the manifest with the facts.
    Each file must be a regular file outside R1_HOME (a client names the path: Store.client_view and
    Store.ingest check it); the facts recorded are read from the bytes taken in, not from the path."""
    overrides = Overrides() if overrides is None else overrides
    fmt, files = model_files(path)
    if fmt == "gguf":
        files += _projector_beside(files[0])
    root = path if path.is_dir() else path.parent
    named = [(file.relative_to(root).as_posix(), file) for file in files]
    try:
        with store.client_view(named) as view:  # refuses a file r1 will not read, or cannot run, before any is hashed
            _facts(fmt, view, [relative for relative, _ in named])
        try:
            record, how = _record(store, model, fmt, _ingest_all(store, root, files, link, emit), overrides, emit)
        except MissingBlobError:
            # A concurrent `rm` took a shared blob between hashing and recording: bring it back once.
            record, how = _record(store, model, fmt, _ingest_all(store, root, files, link, emit), overrides, emit)
    except PermissionError as exc:
        raise BadRequest(f"the r1 daemon cannot read {exc.filename}: permission denied") from exc
    log.info("imported %s from %s (%s)", record.name, path, ", ".join(sorted(set(how.values()))))
    return ImportResult(record, how)


def stored_facts(store: Store, fmt: str, entries: list[FileEntry]) -> ModelFacts:
    """A model's facts, read from the blobs its entries name (before the model is recorded): what is
    stored, whatever the files it came from hold by now. The facts are the language model's; a vision
    projector among the entries must be one (check_projector), or nothing is recorded."""
    with store.staged_view((e.path, e.digest) for e in entries) as view:
        return _facts(fmt, view, [e.path for e in entries])


def manifest_from_blobs(store: Store, files: dict[str, str]) -> Manifest:
    """A manifest for uploaded blobs named as model files ({"model.gguf": "sha256:..."})."""
    entries = []
    for path, digest in files.items():
        digest = parse_digest(digest)
        if not store.blobs.has(digest):
            raise BadRequest(f"no blob {digest} for {path}: upload it first (POST /api/blobs/{digest})")
        entries.append(FileEntry(path, digest, store.blobs.path(digest).stat().st_size))
    entries.sort(key=lambda e: e.path)
    ggufs = [e for e in entries if e.path.lower().endswith(".gguf")]
    # The facts are the language model's; a projector among the files is checked, as at import.
    fmt = "gguf" if ggufs else "mlx"
    return Manifest(tuple(entries), stored_facts(store, fmt, ggufs or entries))


def _facts(fmt: str, folder: Path, paths: list[str]) -> ModelFacts:
    """The facts of the language model among a model's files in `folder`; a projector among them is checked."""
    for path in filter(is_projector, paths):
        check_projector(folder / path, path)
    model = [folder / path for path in paths if not is_companion(path)]
    if not model and paths:
        raise MetadataError(f"{paths[0]} is a vision projector, not a model: import the model's .gguf file "
                            "beside it, and r1 takes the projector along")
    return read_metadata(fmt, model)


def _projector_beside(gguf: Path) -> list[Path]:
    """The vision projector in a GGUF's folder, chosen as `r1 pull` chooses one, if the folder has one."""
    if is_projector(gguf.name):
        return []
    listing = [RemoteFile(p.name, 0) for p in sorted(gguf.parent.iterdir()) if is_projector(p.name) and p.is_file()]
    projector = projector_for(listing, quant_label(gguf.name) or "")
    return [gguf.parent / projector.path] if projector else []


def _record(store: Store, model: ModelName, fmt: str, ingested: Iterator[tuple[str, Ingested]], overrides: Overrides,
            emit: Callable[[Event], None]) -> tuple[ModelRecord, dict[str, str]]:
    """Take the files in and record the model; on any error, the blobs taken in for it go (Store.intake)."""
    with store.intake() as taken:
        entries: list[FileEntry] = []
        for relative, one in ingested:
            taken.append(one)
            entries.append(FileEntry(relative, one.digest, one.size))
        facts = stored_facts(store, fmt, entries)
        emit({"status": "writing manifest"})
        record = store.add(model, Manifest(tuple(entries), facts, overrides))
    return record, {entry.path: one.how for entry, one in zip(entries, taken)}


def progress_events(emit: Callable[[Event], None], status: str, total: int) -> Callable[[int], None]:
    """A progress callback for one file's bytes (Store.ingest, Store.adopt) that emits their running total."""
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        emit({"status": status, "total": total, "completed": done})

    return progress


def _ingest_all(store: Store, root: Path, files: list[Path], link: bool,
                emit: Callable[[Event], None]) -> Iterator[tuple[str, Ingested]]:
    """Each file taken in, with its path in the model, as it is done."""
    for file in files:
        relative = file.relative_to(root).as_posix()
        total = file.stat().st_size
        status = f"importing {relative}"
        emit({"status": status, "total": total, "completed": 0})
        ingested = store.ingest(file, link=link, progress=progress_events(emit, status, total))
        emit({"status": status, "digest": ingested.digest, "total": total, "completed": total})
        yield relative, ingested
