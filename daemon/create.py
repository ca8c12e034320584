"""`r1 create` / `/api/create`: a new model from one in the store or a local file, with its own
chat template, system prompt, default parameters and first messages (Modelfile fields).

The settings are the manifest's overrides, so the new name shares every blob with its
base: creating a variant costs a row in the index, not a copy of the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .draft import with_draft
from .errors import BadRequest
from .importer import Event, check_source, import_model, stored_facts
from .options import OPTION_TYPES
from .runner.limits import too_big
from .runner.options import check_options
from .store import FileEntry, Manifest, ModelRecord, Overrides, Store, parse_digest, parse_name


def check_template_size(source: str, max_bytes: int) -> None:
    """Before anything else is done with a template: its size (R1_TEMPLATE_MAX_BYTES). Converting and
    compiling cost time in proportion, and no real template comes near the limit."""
    size = len(source.encode(errors="replace"))
    if size > max_bytes:
        raise BadRequest(too_big(size, max_bytes))


def converted_within(source: str, max_bytes: int) -> str:
    """A template as r1 renders it (Ollama's Go converted to Jinja, Jinja as it is), within
    R1_TEMPLATE_MAX_BYTES as it came and as it is rendered."""
    from .gotemplate import as_jinja

    check_template_size(source, max_bytes)
    converted = as_jinja(source)
    check_template_size(converted, max_bytes)  # Jinja converted from Go is about twice as long
    return converted


def check_template(source: str) -> str:
    """The template as r1 stores it: an Ollama Go template converted to Jinja (a 400 names what
    cannot be converted), Jinja as it is; one that will not compile is refused now rather than
    at the first chat."""
    from jinja2 import TemplateSyntaxError  # only create needs it in the daemon

    from .gotemplate import as_jinja
    from .runner.sandbox import reading_environment

    source = as_jinja(source)
    try:
        reading_environment().parse(source)
    except TemplateSyntaxError as exc:
        raise BadRequest(f"TEMPLATE is not valid Jinja (line {exc.lineno}): {exc.message}") from exc
    except RecursionError:
        raise BadRequest("TEMPLATE nests its blocks or expressions too deeply for r1 to read it") from None
    return source


def check_settings(body: dict[str, Any]) -> Overrides:
    """The Modelfile fields of a create request, checked."""
    settings: dict[str, Any] = {}
    for key in ("template", "system", "license"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, list) and key == "license":
            value = "\n".join(map(str, value))
        if not isinstance(value, str):
            raise BadRequest(f"field '{key}' must be a string")
        settings[key] = value
    if "template" in settings:
        settings["template"] = check_template(settings["template"])
    parameters = body.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise BadRequest("field 'parameters' must be an object of option names and values")
        unknown = sorted(set(parameters) - set(OPTION_TYPES))
        if unknown:
            raise BadRequest(f"unknown parameter {', '.join(unknown)}; r1 knows {', '.join(sorted(OPTION_TYPES))}")
        settings["parameters"] = check_options(parameters)
    messages = body.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
        ):
            raise BadRequest("field 'messages' must be a list of {role, content} objects")
        settings["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
    return Overrides(**settings)


def combine_overrides(base: Overrides, new: Overrides) -> Overrides:
    """A variant's settings: what it sets replaces the base's, and its PARAMETERs add to the base's."""
    merged = base.to_dict() | new.to_dict()
    if new.parameters is not None:
        merged["parameters"] = {**(base.parameters or {}), **new.parameters}
    return Overrides(**merged)


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
