"""A Modelfile's DRAFT: a smaller model of the same family that speculative decoding guesses with
(daemon/backends/draft_model.py runs it, beside the model, in the model's runner).

The draft's GGUF files join the model's manifest under `draft/`: the model keeps them whatever becomes of
the draft's own name (a blob goes only when no manifest holds it), and its runner loads both. A draft must
tokenize as the model does, checked here from the two files' vocabularies and again by the runner.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import BadRequest
from .memory import Estimate, estimate
from .metadata import ModelFacts, read_gguf_metadata, vocabulary_digest
from .metadata.projector import DRAFT_FOLDER, is_companion
from .store import FileEntry, Manifest, ModelRecord, Overrides, Store


def is_draft_file(path: str) -> bool:
    return path.startswith(DRAFT_FOLDER)


def draft_files(manifest: Manifest) -> list[FileEntry]:
    return [f for f in manifest.files if is_draft_file(f.path)]


def _language_model_files(manifest: Manifest) -> list[FileEntry]:
    """A model's GGUF shards that hold its language model: not its projector, not its own draft."""
    return sorted((f for f in manifest.files if f.path.lower().endswith(".gguf") and not is_companion(f.path)),
                  key=lambda f: f.path)


def with_draft(store: Store, manifest: Manifest, draft_name: str) -> Manifest:
    """`manifest` with the draft model named `draft_name` (in the store) in place of any draft it had."""
    draft = store.get(draft_name)
    for which, fmt in (("the model", manifest.format), (draft.name, draft.manifest.format)):
        if fmt != "gguf":
            raise BadRequest(f"DRAFT needs GGUF models (a draft runs on llama.cpp), and {which} is {fmt}")
    drafts = _language_model_files(draft.manifest)
    model_files = _language_model_files(manifest)
    if not drafts or not model_files:
        raise BadRequest(f"DRAFT {draft.name}: no GGUF language model among its files")
    model_vocabulary = vocabulary_digest(_blob_path(store, model_files[0]))
    if vocabulary_digest(_blob_path(store, drafts[0])) != model_vocabulary:
        raise BadRequest(f"DRAFT {draft.name} tokenizes text differently from the model, so its guesses would be "
                         "other tokens; pick a smaller model of the same family (the same tokenizer)")
    kept = [f for f in manifest.files if not is_draft_file(f.path)]
    added = [FileEntry(DRAFT_FOLDER + Path(f.path).name, f.digest, f.size) for f in drafts]
    overrides = Overrides.from_dict({**manifest.overrides.to_dict(), "draft": draft.name})
    return Manifest(tuple(sorted(kept + added, key=lambda f: f.path)), manifest.facts, overrides, manifest.source)


def _blob_path(store: Store, entry: FileEntry) -> Path:
    return store.blobs.path(entry.digest)


def draft_path(store: Store, record: ModelRecord) -> Path | None:
    """The draft's first GGUF shard in the model's snapshot, or None for a model without a draft."""
    files = sorted(f.path for f in draft_files(record.manifest))
    return store.snapshot_path(record.manifest_id) / files[0] if files else None


@functools.lru_cache(maxsize=32)
def _draft_facts(paths: tuple[Path, ...]) -> ModelFacts:
    return read_gguf_metadata(list(paths))


def draft_need(store: Store, record: ModelRecord, num_ctx: int, **options: Any) -> Callable[[int], Estimate] | None:
    """The draft's memory for a number of slots (its weights, its cells for as many sequences as the model
    has, its compute), with the model's estimate `options`; None without a draft."""
    files = sorted(draft_files(record.manifest), key=lambda f: f.path)
    if not files:
        return None
    facts = _draft_facts(tuple(_blob_path(store, f) for f in files))
    size = sum(f.size for f in files)
    return lambda slots: estimate(facts, size, num_ctx, slots=slots, **options)
