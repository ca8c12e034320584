"""Pulls from Ollama's registry, spoken the way `ollama pull` speaks it: the manifest of a model
(ollama_manifest.py reads it), the small layers read into r1 settings now, and the plan to fetch
the GGUF (and its vision projector's layer). Blobs are usually a redirect to a CDN that serves
byte ranges. Public models need no login.
"""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp

from ... import __version__
from ...store import ModelName
from ..ollama_manifest import (
    MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST,
    MAX_SETTING_LAYER,
    Layer,
    OllamaRef,
    RegistryError,
    RegistryManifest,
    kept_layers,
    model_layer,
    parse_manifest,
    setting_layers,
)
from ..ollama_settings import settings_from_layers
from ..quant import Choice, RemoteFile
from .plan import PullPlan
from .transfer import DigestMismatchError, get_bytes, read_limited

HEADERS = {"User-Agent": f"r1/{__version__}"}


async def fetch_manifest(session: aiohttp.ClientSession, ref: OllamaRef) -> RegistryManifest | None:
    """The manifest of `ref`; None when the registry has no such model or tag."""
    try:
        async with session.get(ref.manifest_url(), headers={**HEADERS, "Accept": MANIFEST_MEDIA_TYPE}) as response:
            if response.status == 404:
                return None
            if response.status in (401, 403):
                raise RegistryError(f"Ollama's registry at {ref.registry} refused {ref} ({response.status}); "
                                    "r1 pulls public models, without logging in")
            if response.status != 200:
                raise RegistryError(f"Ollama's registry at {ref.registry} answered {response.status} for {ref}")
            data = await read_limited(response, MAX_MANIFEST)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise RegistryError(f"cannot reach Ollama's registry at {ref.registry}: {exc or type(exc).__name__}") from exc
    return parse_manifest(data, ref)


async def fetch_layer(session: aiohttp.ClientSession, ref: OllamaRef, layer: Layer, limit: int) -> bytes:
    """A small layer's bytes (a template, parameters...), checked against its digest; not stored."""
    if layer.size > limit:
        raise RegistryError(f"the {layer.media_type} layer of {ref} has {layer.size:,} bytes; r1 reads at most {limit:,}")
    data = await get_bytes(session, ref.blob_url(layer.digest), HEADERS, limit)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if digest != layer.digest:
        raise DigestMismatchError(f"the {layer.media_type} layer of {ref} failed its sha256 check "
                                  f"(expected {layer.digest}, got {digest}); try again later")
    return data


async def registry_plan(session: aiohttp.ClientSession, name: ModelName, ref: OllamaRef,
                        manifest: RegistryManifest, max_template_bytes: int | None = None) -> PullPlan:
    """What pulling `ref` stores as `name`: the GGUF, and its settings read from the small layers now (off the
    event loop: converting a template takes CPU); a template over `max_template_bytes` is left out."""
    model_layer(manifest, ref)  # refuses a model r1 cannot run before any layer is fetched
    contents = [(kind, await fetch_layer(session, ref, layer, MAX_SETTING_LAYER))
                for kind, layer in setting_layers(manifest)]
    overrides, notes = await asyncio.to_thread(settings_from_layers, contents, max_template_bytes)
    files = [RemoteFile(path, layer.size, layer.digest, ref.blob_url(layer.digest))
             for path, layer in kept_layers(manifest, ref)]
    source = {"registry": ref.registry, "repo": ref.repo, "tag": ref.tag, "digest": manifest.digest}
    return PullPlan(name, ref.origin, "gguf", Choice(ref.tag, tuple(files)), source, dict(HEADERS), overrides, tuple(notes))
