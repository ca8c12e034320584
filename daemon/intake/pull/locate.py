"""Where a pull comes from. A name the store lacks is looked up in r1's catalog and on the Hub
first, then in Ollama's registry; a name the store has is checked against the source it was
pulled from, and pulled again only when that has something newer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import aiohttp

from ...config import Settings
from ...remote.models import remote_of
from ...store import ModelName, ModelRecord, Store
from ..ollama_manifest import OllamaRef, kept_layers, ollama_ref
from ..quant import MLX_TAG
from .hub import OfflineError, UnknownModelError, hub_plan, hub_repo
from .ollama_registry import fetch_manifest, registry_plan
from .plan import PullPlan


@dataclass(frozen=True)
class Kept:
    """A stored model a pull leaves as it is, and why."""

    record: ModelRecord
    note: str
    up_to_date: bool = False  # checked against its source, which has nothing newer


async def locate(name: ModelName, settings: Settings, session: aiohttp.ClientSession) -> PullPlan:
    """The plan for a model the store lacks; an UnknownModelError that lists every place looked in."""
    hub = hub_repo(name)
    if settings.hf_offline:
        where = f"from {hub[0]}" if hub else "from Ollama's registry"
        raise OfflineError(f"HF_HUB_OFFLINE is set, so r1 cannot pull {name} {where}; unset it, or `r1 import` a local file")
    looked = ["not in the store"]
    if hub is not None:
        try:
            return await asyncio.to_thread(hub_plan, name, *hub, settings)
        except UnknownModelError as exc:
            if not name.is_hf:  # a catalog entry names its repo: nowhere else to look
                raise
            looked.append(str(exc))
    elif name.registry is None:
        looked += ["not in r1's catalog (`r1 search` lists it)",
                   f"not a Hugging Face repo (those are named org/repo[:quant], from {settings.hf_endpoint})"]
    if settings.no_ollama_registry:
        looked.append("Ollama's registry not asked (R1_NO_OLLAMA_REGISTRY is set)")
        raise UnknownModelError(f"model '{name}' not found: {'; '.join(looked)}")
    ref = ollama_ref(name, settings.ollama_registry)
    manifest = await fetch_manifest(session, ref)
    if manifest is None:
        looked.append(f"not in Ollama's registry at {settings.ollama_registry} (as {ref.repo}:{ref.tag})")
        raise UnknownModelError(f"model '{name}' not found: {'; '.join(looked)}")
    plan = await registry_plan(session, name, ref, manifest, settings.template_max_bytes)
    if name.is_hf:  # say why an org/repo name comes from the registry
        return replace(plan, notes=(f"{looked[-1]}: pulling {ref} from Ollama's registry", *plan.notes))
    return plan


async def refresh(name: ModelName, record: ModelRecord, store: Store, settings: Settings,
                  session: aiohttp.ClientSession) -> PullPlan | Kept:
    """For a stored model: the plan to pull what its source has that is newer (or files the store
    lost), else why it is kept as it is."""
    source = record.manifest.source
    if settings.hf_offline:
        return Kept(record, "HF_HUB_OFFLINE is set: kept the stored copy without checking for updates")
    if remote := remote_of(record.manifest):
        return Kept(record, f"{record.name} is remote engine {remote[0]}'s model {remote[1]}: "
                            "there is nothing to download")
    if source is None:
        return Kept(record, f"{record.name} was imported from a file or made with `r1 create`, not pulled: "
                            "there is no newer version to check for")
    complete = not await asyncio.to_thread(store.missing_files, record.manifest)
    if "registry" in source:
        if settings.no_ollama_registry:
            return Kept(record, "R1_NO_OLLAMA_REGISTRY is set: kept the stored copy without checking for updates")
        namespace, model = source["repo"].split("/", 1)
        ref = OllamaRef(settings.ollama_registry, namespace, model, source["tag"])
        manifest = await fetch_manifest(session, ref)
        if manifest is None:
            raise UnknownModelError(f"{ref} is no longer in Ollama's registry at {ref.registry}; "
                                    f"the stored copy of {record.name} stays as it is")
        paths = [path for path, _ in kept_layers(manifest, ref)]
        if complete and manifest.digest == source["digest"] and _has_files(record, paths):
            return Kept(record, f"{ref} has not changed (manifest {manifest.digest[7:19]})", up_to_date=True)
        return await registry_plan(session, name, ref, manifest, settings.template_max_bytes)
    tag = None if source["tag"] == MLX_TAG else source["tag"]
    plan = await asyncio.to_thread(hub_plan, name, source["repo"], tag, settings)
    if complete and plan.source == source and _has_files(record, [f.path for f in plan.files]):
        return Kept(record, f"{plan.origin} is still at commit {source['commit'][:12]}", up_to_date=True)
    return plan


def _has_files(record: ModelRecord, paths: list[str]) -> bool:
    """Whether the stored model has every file its source's would (one pulled before r1 kept projectors
    lacks its projector: pulling it again brings that in)."""
    return set(paths) <= {f.path for f in record.manifest.files}
