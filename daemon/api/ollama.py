"""Ollama's REST API (/api/...), field for field, for what r1 does so far; plus r1's /api/import."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from .. import __version__
from ..capabilities import capabilities
from ..create import check_request, create_model
from ..draft import is_draft_file
from ..generation import model_path, model_spec, model_template
from ..intake import catalog
from ..intake.files import Event, check_source, import_model
from ..intake.tools.importing import check_import_request, import_from
from ..metadata.projector import is_projector, projector_among
from ..remote.models import remote_of
from ..remote.records import RemoteRecords
from ..store import ModelNotFoundError, ModelRecord, Store, parse_name
from ..scheduler.scheduler import Scheduler
from .context import CORE, FILE_JOBS, PULLS, REMOTE_RECORDS, SCHEDULER, SETTINGS, STORE
from .fields import check_path_length, get_bool, required_str
from .http import must_finish, read_json, start_owned_task, stream_ndjson
from .remotes import create_remote_model

routes = web.RouteTableDef()


def _store(request: web.Request) -> Store:
    return request.app[STORE]


def details(record: ModelRecord) -> dict[str, Any]:
    facts = record.manifest.facts
    family = facts.family or facts.architecture or ""
    return {
        "parent_model": "",
        "format": record.manifest.format,
        "family": family,
        "families": [family] if family else None,
        "parameter_size": facts.parameter_size or "",
        "quantization_level": facts.quantization or "",
    }


def summary(record: ModelRecord) -> dict[str, Any]:
    """A model as /api/tags lists it; a remote model with r1's `remote` (the remote, the upstream model)."""
    remote = remote_of(record.manifest)
    return {
        "name": record.name,
        "model": record.name,
        "modified_at": record.modified_at,
        "size": record.manifest.size,
        "digest": record.manifest_id,
        "details": details(record),
        # r1's addition: /api/show's capabilities, so a list can tell an embedding model from a chat model.
        "capabilities": model_capabilities(record),
        **({"remote": {"name": remote[0], "model": remote[1]}} if remote else {}),
    }


# A remote model's upstream decides what it can do; r1 passes both on.
REMOTE_CAPABILITIES = ["completion", "tools"]


def model_capabilities(record: ModelRecord) -> list[str]:
    """Ollama's capability names for a stored model (the list /api/show and /api/tags give)."""
    if remote_of(record.manifest) is not None:
        return list(REMOTE_CAPABILITIES)
    return capabilities(record.manifest.facts, model_template(record),
                        projector=projector_among(record.manifest.files) is not None)


def model_info(record: ModelRecord) -> dict[str, Any]:
    """GGUF-style keys, as Ollama's /api/show returns them."""
    facts = record.manifest.facts
    arch = facts.architecture or ""
    info: dict[str, Any] = {"general.architecture": arch}
    for key, value in (("general.name", facts.name), ("general.license", model_license(record)),
                       ("general.parameter_count", facts.parameter_count),
                       ("general.quantization", facts.quantization)):
        if value is not None:
            info[key] = value
    for key, value in (("context_length", facts.context_length), ("embedding_length", facts.embedding_length),
                       ("block_count", facts.block_count), ("attention.head_count", facts.head_count),
                       ("attention.head_count_kv", facts.head_count_kv), ("attention.key_length", facts.key_length),
                       ("attention.value_length", facts.value_length)):
        if arch and value is not None:
            info[f"{arch}.{key}"] = value
    return info


def model_license(record: ModelRecord) -> str | None:
    """The license in effect: one set by `r1 create`, else the model's own."""
    return record.manifest.overrides.license or record.manifest.facts.license


def parameter_lines(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) pairs as a Modelfile writes them: one line per stop string."""
    pairs = []
    for name, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((name, json.dumps(item) if isinstance(item, (str, bool)) else str(item)))
    return pairs


def memory_fit(store: Store, record: ModelRecord, scheduler: Scheduler) -> dict[str, Any]:
    """r1's addition to /api/show: what loading the model will take at its default context, with the
    sequence slots the scheduler would give it (`slots`, counted in kv_cache and compute)."""
    # The runner's own num_ctx, PARAMETERs included.
    spec, need, _ = model_spec(store, record, {}, scheduler.extra_buffers)
    slots = scheduler.slots_for(spec)  # one slot where even one does not fit
    sized = need(slots)
    sized = sized._replace(kv_ram=scheduler.host_cache(spec.format, sized.total))
    # With a GPU (as runners reported it), the layers that fit it leave the host: only the rest is budgeted.
    whole, placed = spec.with_slots(slots), scheduler.placed(spec.with_slots(slots))
    on_host = sized.total - (whole.estimate - placed.estimate)
    return {"estimate": sized.total, "num_ctx": spec.num_ctx, "kv_cache_type": spec.kv_cache_type,
            "budget": scheduler.budget, "fits": on_host <= scheduler.budget, "host": on_host, "device": placed.device,
            **sized._asdict()}


def show(store: Store, record: ModelRecord, scheduler: Scheduler, remotes: RemoteRecords) -> dict[str, Any]:
    remote = remote_of(record.manifest)
    if remote is not None:
        return show_remote(remotes, record, *remote)
    overrides = record.manifest.overrides
    template = model_template(record) or ""
    parameters = parameter_lines(overrides.parameters or {})
    # FROM the model's name: `r1 create` takes no path inside the store (`ollama show --modelfile` gives its blob).
    modelfile = (f"# Modelfile generated by r1 for {record.name}\n# its files: {model_path(store, record)}\n"
                 f"FROM {record.name}\n")
    if overrides.draft:
        modelfile += f"DRAFT {overrides.draft}\n"
    if template:
        modelfile += f'TEMPLATE """{template}"""\n'
    if overrides.system:
        modelfile += f'SYSTEM """{overrides.system}"""\n'
    modelfile += "".join(f"PARAMETER {name} {value}\n" for name, value in parameters)
    for message in overrides.messages or []:
        modelfile += f'MESSAGE {message["role"]} """{message["content"]}"""\n'
    if license_text := model_license(record):
        modelfile += f'LICENSE """{license_text}"""\n'
    missing = set(store.missing_files(record.manifest))
    held = store.blob_sources(record.manifest)  # files another tool holds: where from, and whether still as taken
    broken = {b.path: str(b) for b in store.broken(record.manifest, held)}
    return {
        "license": model_license(record) or "",
        "modelfile": modelfile,
        "parameters": "\n".join(f"{name:<30} {value}" for name, value in parameters),
        "template": template,
        "system": overrides.system or "",
        "messages": overrides.messages or [],
        "details": details(record),
        "model_info": model_info(record),
        "capabilities": model_capabilities(record),
        "modified_at": record.modified_at,
        # r1's additions: where the bytes are, and whether all of them are there.
        "digest": record.manifest_id,
        "size": record.manifest.size,
        "memory": memory_fit(store, record, scheduler),
        "path": str(store.snapshot_path(record.manifest_id)),
        "files": [
            {"path": f.path, "digest": f.digest, "size": f.size, "present": f.path not in missing,
             **({"source": {"kind": held[f.path].kind, "path": held[f.path].source}} if f.path in held else {}),
             **({"broken": broken[f.path]} if f.path in broken else {}),
             **({"kind": "projector"} if is_projector(f.path) else {}),
             **({"kind": "draft"} if is_draft_file(f.path) else {})}
            for f in record.manifest.files
        ],
    }


def show_remote(remotes: RemoteRecords, record: ModelRecord, remote: str, upstream: str) -> dict[str, Any]:
    """A remote model: what it stands for, the context length its upstream reported, its price; the
    upstream applies its own chat template, so there is none here."""
    overrides = record.manifest.overrides
    parameters = parameter_lines(overrides.parameters or {})
    modelfile = f"# Modelfile generated by r1 for {record.name}\nFROM {remote}:{upstream}\n"
    if overrides.system:
        modelfile += f'SYSTEM """{overrides.system}"""\n'
    modelfile += "".join(f"PARAMETER {name} {value}\n" for name, value in parameters)
    price = remotes.price(f"{remote}:{upstream}")
    return {
        "license": "",
        "modelfile": modelfile,
        "parameters": "\n".join(f"{name:<30} {value}" for name, value in parameters),
        "template": "",
        "system": overrides.system or "",
        "messages": overrides.messages or [],
        "details": details(record),
        "model_info": {"general.architecture": "", **({"remote.context_length": record.manifest.facts.context_length}
                                                      if record.manifest.facts.context_length else {})},
        "capabilities": model_capabilities(record),
        "modified_at": record.modified_at,
        "digest": record.manifest_id,
        "size": 0,
        # r1's addition: which engine answers, as which model, and at what price per million tokens.
        "remote": {"name": remote, "model": upstream, "context_length": record.manifest.facts.context_length,
                   "price": None if price is None else {"input": price.input, "output": price.output}},
        "files": [],
    }


@routes.get("/")
async def health(request: web.Request) -> web.Response:
    # Ollama's exact words: health checks written for Ollama compare the text.
    return web.Response(text="Ollama is running", headers={"X-R1-Version": __version__})


# The Ollama release whose API r1 implements (think, tools, format schemas, embed truncate and
# dimensions, logprobs): clients compare `version` with Ollama's releases to pick features.
OLLAMA_API_LEVEL = "0.12.11"


@routes.get("/api/version")
async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": OLLAMA_API_LEVEL, "r1_version": __version__})


@routes.get("/api/tags")
async def tags(request: web.Request) -> web.Response:
    store = _store(request)

    def listed() -> list[dict[str, Any]]:
        models = []
        for record in store.models():
            broken = store.broken(record.manifest)  # r1's addition: files another tool held that changed or went
            models.append(summary(record) | ({"broken": [str(b) for b in broken]} if broken else {}))
        return models

    return web.json_response({"models": await asyncio.to_thread(listed)})


@routes.post("/api/show")
async def show_model(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = required_str(body, "model", "name")
    store = _store(request)
    record = await asyncio.to_thread(store.get, name)
    return web.json_response(await asyncio.to_thread(show, store, record, request.app[SCHEDULER],
                                                     request.app[REMOTE_RECORDS]))


@routes.delete("/api/delete")
@must_finish  # a model whose name is gone unloads too, whether or not its client waits for that
async def delete(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = required_str(body, "model", "name")
    store = _store(request)
    record = await asyncio.to_thread(store.remove, name)
    weights = record.manifest.weights_id
    scheduler = request.app[SCHEDULER]
    loaded_as_this = any(i.spec.name == record.name for i in scheduler.instances() if i.spec.weights == weights)
    if loaded_as_this or not any(r.manifest.weights_id == weights for r in await asyncio.to_thread(store.models)):
        # As Ollama, a removed model is unloaded (once its requests end; the runner's open files outlive
        # the blobs): `r1 ps` must not go on naming it. A runner that another name loaded stays.
        await scheduler.stop(weights)
    return web.Response()


def rfc3339(seconds: float | None) -> str:
    """Ollama's timestamps; a model kept forever gets one far in the future, as Ollama sends."""
    if seconds is None:
        return "2318-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


@routes.get("/api/ps")
async def ps(request: web.Request) -> web.Response:
    return web.json_response(running(request.app))


def running(app: web.Application) -> dict[str, Any]:
    """The loaded models, most recently used first, in Ollama's shape plus r1's own fields
    (/api/ps, and the console's `ps` events)."""
    scheduler = app[SCHEDULER]
    models = []
    for instance in sorted(scheduler.instances(), key=lambda i: -i.last_used):
        spec = instance.spec
        info = instance.runner.info if instance.runner is not None else {}
        # A GGUF runner says what it offloaded (size_vram: the GPU's share); MLX on Metal holds all of it there.
        size_vram = instance.device if info.get("offload") else instance.memory if info.get("gpu") else 0
        model = {
            "name": spec.name,
            "model": spec.name,
            "size": instance.memory + instance.device,
            "digest": spec.manifest_id,
            "details": details(spec.record),
            "expires_at": rfc3339(scheduler.expires_at(instance)),
            "size_vram": size_vram,
            "context_length": spec.num_ctx,
            # r1's additions
            "kv_cache_type": spec.kv_cache_type,
            "slots": instance.slots,  # sequences its runner decodes together, each with context_length tokens
            "slots_busy": instance.busy,
            "state": "loading" if not instance.ready else "stopping" if instance.stopping else
                     "busy" if instance.leases else "idle",
            "estimate": spec.estimate,  # for all its slots
            "pid": instance.runner.pid if instance.runner is not None else None,
            "options": dict(spec.load),  # what the runner was loaded with: another set is another runner
        }
        if "kv_ram_cap" in info:  # the KV cache tiers (bytes), as of the runner's last health report
            model["kv_cache"] = {"ram": info["kv_ram"], "ram_cap": info["kv_ram_cap"],
                                 "disk": info.get("kv_disk", 0), "disk_cap": info.get("kv_disk_cap", 0)}
        if info.get("offload"):  # llama.cpp runners: layers on the GPU (n_gpu_layers) of all, and the GPUs seen
            offload = info["offload"]
            model["offload"] = {"layers": offload["layers"], "total_layers": offload["total_layers"],
                                "devices": offload["devices"]}
        if info.get("extra_buffers") is not None:  # llama.cpp runners: AMX / repacked kernels, or the safe ones
            model["extra_buffers"] = info["extra_buffers"]
        models.append(model)
    for record, count in app[CORE].remotes.serving.values():  # no memory here: the upstream holds them
        remote, upstream = remote_of(record.manifest) or ("", "")
        models.append({"name": record.name, "model": record.name, "size": 0, "digest": record.manifest_id,
                       "details": details(record), "expires_at": None, "size_vram": 0,
                       "context_length": record.manifest.facts.context_length or 0,
                       "state": "busy", "remote": {"name": remote, "model": upstream}, "requests": count})
    return {"models": models, "memory": {"used": scheduler.used, "budget": scheduler.budget,
                                         "device_used": scheduler.device_used, "device_free": scheduler.gpu_free},
            "waiting": scheduler.waiting}


@routes.post("/api/copy")
async def copy(request: web.Request) -> web.Response:
    body = await read_json(request)
    source = required_str(body, "source")
    destination = required_str(body, "destination")
    await asyncio.to_thread(_store(request).copy, source, destination)
    return web.Response()


async def _one(event: Event) -> AsyncIterator[Event]:
    yield event


async def _progress_of(request: web.Request, job: Callable[[Callable[[Event], None]], Event], stream: bool,
                       first: AsyncIterator[Event] | None = None) -> web.StreamResponse:
    """Run a store job on the file-jobs pool (it goes on if the client leaves) and relay its progress events;
    `first`: events to relay before it, the job starting once they end (the pull of a missing FROM model)."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()

    def emit(event: Event) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    async def work() -> None:
        try:
            events.put_nowait(await request.app[FILE_JOBS].run(job, emit))
        except BaseException as exc:  # handed to whoever is listening; the task itself ends quietly
            events.put_nowait(exc)
        events.put_nowait(None)

    if first is None:
        start_owned_task(request.app, work())

    async def progress() -> AsyncIterator[Event]:
        if first is not None:
            async for event in first:
                yield event
            start_owned_task(request.app, work())
        while (item := await events.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    if stream:
        return await stream_ndjson(request, progress())
    last: Event = {}
    async for event in progress():
        last = event
    return web.json_response(last)


@routes.post("/api/import")
async def import_(request: web.Request) -> web.StreamResponse:
    """r1's own: import a local file or folder the daemon can read ({"path", "model", "link"}), or the models
    another tool keeps ({"from": "ollama" | "hf" | "lmstudio", "dir", "models" or "all", "trust", "dry_run"})."""
    body = await read_json(request)
    check_path_length(body, "path", "dir")
    if body.get("from") is not None:
        tool, root, names = check_import_request(body)
        store = _store(request)
        return await _progress_of(request, lambda emit: import_from(
            store, tool, root, names, everything=get_bool(body, "all", False), trust=get_bool(body, "trust", False),
            dry_run=get_bool(body, "dry_run", False), emit=emit), get_bool(body, "stream", True))
    path = required_str(body, "path")
    name = required_str(body, "model", "name")
    link = get_bool(body, "link", True)
    model = parse_name(name)  # fail fast, with a 400, before any work starts
    source = check_source(path)
    store = _store(request)
    return await _progress_of(
        request, lambda emit: import_model(store, source, model, link=link, emit=emit).event(), get_bool(body, "stream", True)
    )


@routes.post("/api/create")
async def create(request: web.Request) -> web.StreamResponse:
    """Ollama's create from Modelfile fields: {"model", "from" | r1's "path", "template", "system", "parameters", ...}."""
    body = await read_json(request)
    # Off the loop: converting an Ollama template takes CPU (R1_TEMPLATE_MAX_BYTES bounds it).
    overrides = await request.app[FILE_JOBS].run(check_request, body, request.app[SETTINGS].template_max_bytes)
    store = _store(request)
    if isinstance(body.get("from"), str) and ":" in body["from"]:
        made = await create_remote_model(request, body["model"], body["from"], overrides)
        if made is not None:
            return web.json_response(made) if not get_bool(body, "stream", True) else await stream_ndjson(
                request, _one(made))

    def job(emit: Callable[[Event], None]) -> Event:
        record = create_model(store, body, emit)
        return {"status": "success", "model": record.name, "digest": record.manifest_id}

    return await _progress_of(request, job, get_bool(body, "stream", True), await _pull_missing_base(request, body))


async def _pull_missing_base(request: web.Request, body: dict[str, Any]) -> AsyncIterator[Event] | None:
    """As Ollama's create does, a FROM model the store lacks is pulled first: the pull's events (its own
    "success" told as "pulled NAME": the create's comes last), or None when the model is here."""
    source = body.get("from")
    if not isinstance(source, str):
        return None
    try:
        await asyncio.to_thread(_store(request).get, source)
        return None
    except ModelNotFoundError:
        pass
    pulling = await request.app[PULLS].start(source)  # an unknown name fails here, with a status of its own

    async def events() -> AsyncIterator[Event]:
        with pulling.following():
            async for event in pulling.follow():
                yield {"status": f"pulled {event['model']}"} if event.get("status") == "success" else event

    return events()


@routes.post("/api/pull")
async def pull(request: web.Request) -> web.StreamResponse:
    """Ollama's pull; joins a pull of the same model already under way, and goes on if the client leaves."""
    body = await read_json(request)
    name = required_str(body, "model", "name")
    stream = get_bool(body, "stream", True)
    pulling = await request.app[PULLS].start(name)
    with pulling.following():
        if stream:
            return await stream_ndjson(request, pulling.follow())
        last: Event = {}
        async for event in pulling.follow():
            last = event
        return web.json_response(last)


@routes.delete("/api/pull")
async def cancel_pull(request: web.Request) -> web.Response:
    """r1's own: {"model": NAME} cancels its pull for every client (404 when none is under way); with
    "unless_followed": true, not while a client streams its progress (409): `r1 pull`'s Ctrl-C."""
    body = await read_json(request)
    name = await request.app[PULLS].cancel(required_str(body, "model", "name"), get_bool(body, "unless_followed", False))
    return web.json_response({"status": "cancelled", "model": str(name)})


@routes.get("/api/catalog")
async def catalog_list(request: web.Request) -> web.Response:
    """r1's own: the short names `r1 pull` knows, and whether each is in the store."""
    # r1's `imported`: the name holds a model imported from a file, which need not be the catalog's (a base
    # model where the catalog pulls an instruction-tuned one).
    records = await asyncio.to_thread(_store(request).models)
    stored = {record.name.lower(): record.manifest.source is None for record in records}
    models = [{**entry.as_json(), "installed": key in stored, **({"imported": True} if stored.get(key) else {})}
              for key, entry in catalog.entries().items()]
    return web.json_response({"models": models})
