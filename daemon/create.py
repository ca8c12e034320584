"""`r1 create` / `/api/create`: a new model from one in the store, a local file or uploaded blobs (the
files are taken in by intake/files.py), with its own chat template, system prompt, default
parameters and first messages (Modelfile fields, checked by intake/settings.py).

The settings are the manifest's overrides, so the new name shares every blob with its
base: creating a variant costs a row in the index, not a copy of the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .draft import with_draft
from .errors import BadRequest
from .intake.files import Event, check_source, import_model, manifest_from_blobs
from .intake.settings import check_settings, check_template
from .store import Manifest, ModelRecord, Overrides, Store, parse_name
from .templates.sized import converted_within


def combine_overrides(base: Overrides, new: Overrides) -> Overrides:
    """A variant's settings: what it sets replaces the base's, and its PARAMETERs add to the base's."""
    merged = base.to_dict() | new.to_dict()
    if new.parameters is not None:
        merged["parameters"] = {**(base.parameters or {}), **new.parameters}
    return Overrides(**merged)


def create_model(store: Store, body: dict[str, Any], emit: Callable[[Event], None]) -> ModelRecord:
    """Runs in a thread; the request body was checked by check_request()."""
    name = parse_name(body["model"])
    overrides = check_settings(body)
    if body.get("path"):
        record = import_model(store, check_source(body["path"]), name, emit=emit, overrides=overrides).record
        if not body.get("draft"):
            return record
        try:
            return store.add(name, _drafted(store, record.manifest, body, emit))
        except BadRequest as exc:
            raise BadRequest(f"{exc} ({name} was imported without a draft)") from exc
    if body.get("files"):
        emit({"status": "parsing model files"})
        uploaded = manifest_from_blobs(store, body["files"])
        manifest = Manifest(uploaded.files, uploaded.facts, overrides)
    else:
        base = store.get(body["from"])
        emit({"status": f"using {base.name}"})
        overrides = combine_overrides(base.manifest.overrides, overrides)
        manifest = Manifest(base.manifest.files, base.manifest.facts, overrides, base.manifest.source)
    manifest = _drafted(store, manifest, body, emit)
    emit({"status": "writing manifest"})
    return store.add(name, manifest)


def _drafted(store: Store, manifest: Manifest, body: dict[str, Any], emit: Callable[[Event], None]) -> Manifest:
    """The manifest with the request's DRAFT model, if it names one."""
    if not body.get("draft"):
        return manifest
    emit({"status": f"adding draft model {body['draft']}"})
    return with_draft(store, manifest, body["draft"])


def check_request(body: dict[str, Any], max_template_bytes: int) -> Overrides:
    """Fail fast, with a 400, before any work starts; the Modelfile fields, checked. Converting and parsing a
    template takes CPU: call it off the event loop."""
    if isinstance(body.get("template"), str):
        body = {**body, "template": check_template(converted_within(body["template"], max_template_bytes))}
    if not isinstance(body.get("model"), str):
        raise BadRequest("field 'model' is required: the name of the model to create")
    parse_name(body["model"])
    if body.get("quantize"):
        raise BadRequest("r1 does not re-quantize models; pull the quantization you want instead "
                         "(r1 pull org/repo:Q4_K_M, or deepseek-r1:7b-q8_0)")
    sources = [key for key in ("from", "path", "files") if body.get(key)]
    if len(sources) != 1:
        raise BadRequest("give exactly one of 'from' (a model in the store), 'files' (uploaded blobs by file name) "
                         "or 'path' (a local GGUF file or MLX folder)")
    if sources == ["files"]:
        files = body["files"]
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise BadRequest("field 'files' must map file names to blob digests (\"sha256:...\")")
    elif not isinstance(body[sources[0]], str):
        raise BadRequest(f"field '{sources[0]}' must be a string")
    if body.get("draft") is not None:
        if not isinstance(body["draft"], str):
            raise BadRequest("field 'draft' must be a string: the name of a draft model in the store")
        parse_name(body["draft"])
    if sources == ["path"]:
        check_source(body["path"])
    return check_settings(body)
