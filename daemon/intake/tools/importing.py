"""`r1 import --from ollama|hf|lmstudio`: models another tool already downloaded, brought into the store
without copying a byte where the file system allows (Store.adopt: a reflink, a hard link, or a symlink,
never changing the other tool's files), with the settings that tool keeps beside them. Each file is the
regular file discovery found inside the tool's folder, checked again as it is taken in; an import that
fails half-way leaves none of its links behind (Store.intake).

The CLI computes the tool's folder with the user's environment (config.tool_roots) and sends it; the
daemon discovers (tools/), then imports the models asked for, one after another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import BadRequest
from ...store import FileEntry, Manifest, MissingBlobError, ModelRecord, Overrides, Store, parse_name
from ..files import Event, progress_events, stored_facts
from . import Found, discover


def listing(found: Found) -> Event:
    """A discovered model as `r1 import --from TOOL` lists it."""
    return {"name": found.name, "format": found.format, "size": found.size, "files": len(found.files),
            "where": found.where, "notes": list(found.notes), **({"problem": found.problem} if found.problem else {})}


def chosen(found: list[Found], names: list[str], everything: bool) -> list[Found]:
    """The models asked for, by their r1 names; each name must be one of them and importable."""
    if everything:
        return [f for f in found if f.importable]
    by_name = {f.name: f for f in found}
    wanted = []
    for name in names:
        model = by_name.get(name) or by_name.get(f"{name}:latest")
        if model is None:
            raise BadRequest(f"no model {name!r} there; `r1 import --from TOOL` with no names lists what there is")
        if model.problem:
            raise BadRequest(f"{model.name} cannot be imported: {model.problem}")
        wanted.append(model)
    return wanted


def import_found(store: Store, found: Found, *, trust: bool, emit: Callable[[Event], None]) -> tuple[ModelRecord, int, int]:
    """One discovered model into the store: its record, and the bytes linked and copied for it."""
    try:
        return _take_in(store, found, trust, emit)
    except MissingBlobError:  # a concurrent `rm` took a shared blob between taking it in and recording
        return _take_in(store, found, trust, emit)


def _take_in(store: Store, found: Found, trust: bool, emit: Callable[[Event], None]) -> tuple[ModelRecord, int, int]:
    with store.intake() as taken:
        for file in found.files:
            status = f"importing {found.name} {file.path}"
            named = f"sha256:{file.sha256}" if file.sha256 else None  # the digest the tool names the file by
            taken.append(store.adopt(file.source, sha256=named, trust=trust and named is not None, inside=file.inside,
                                     from_client=True, progress=progress_events(emit, status, file.size)))
            emit({"status": status, "digest": taken[-1].digest, "how": taken[-1].how, "total": file.size,
                  "completed": file.size})
        entries = [FileEntry(file.path, ingested.digest, ingested.size) for file, ingested in zip(found.files, taken)]
        facts = stored_facts(store, found.format, entries)
        manifest = Manifest(tuple(sorted(entries, key=lambda e: e.path)), facts, Overrides.from_dict(found.settings))
        record = store.add(parse_name(found.name), manifest)
    return record, sum(i.bytes_linked for i in taken), sum(i.bytes_copied for i in taken)


def import_from(store: Store, tool: str, root: Path, names: list[str], *, everything: bool, trust: bool,
                dry_run: bool, emit: Callable[[Event], None]) -> Event:
    """List what `tool` keeps under `root` (dry run, or no names), or import the models asked for; the
    last event sums it up: models imported, bytes linked and copied (0 is the aim), seconds."""
    started = time.perf_counter()
    found = discover(tool, root)
    if dry_run or not (names or everything):
        return {"status": "success", "tool": tool, "root": str(root), "models": [listing(f) for f in found]}
    imported, linked, copied = [], 0, 0
    for model in chosen(found, names, everything):
        record, model_linked, model_copied = import_found(store, model, trust=trust, emit=emit)
        imported.append({"name": record.name, "digest": record.manifest_id, "notes": list(model.notes)})
        linked += model_linked
        copied += model_copied
    return {"status": "success", "tool": tool, "root": str(root), "imported": imported, "bytes_linked": linked,
            "bytes_copied": copied, "seconds": round(time.perf_counter() - started, 3), "trusted": trust}


def check_import_request(body: dict[str, Any]) -> tuple[str, Path, list[str]]:
    """The tool, its folder and the names of a POST /api/import with "from"; a 400 for anything else."""
    tool = body.get("from")
    root = body.get("dir")
    if not isinstance(root, str) or not Path(root).is_absolute():
        raise BadRequest("field 'dir' must be the absolute path of the tool's models folder "
                         "(r1 import --from works it out from the tool's own variables, or takes --dir)")
    names = body.get("models") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequest("field 'models' must be a list of model names")
    return str(tool), Path(root), names
