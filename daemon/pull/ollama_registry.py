"""Ollama's registry, spoken the way `ollama pull` speaks it.

A model is an OCI-style manifest per namespace, model and tag:
  GET {registry}/v2/{namespace}/{model}/manifests/{tag}
  (Accept: application/vnd.docker.distribution.manifest.v2+json)
whose layers name sha256-addressed blobs by media type (the GGUF, its template, system prompt,
parameters...), each at
  GET {registry}/v2/{namespace}/{model}/blobs/sha256:<hex>
which is usually a redirect to a CDN that serves byte ranges. Public models need no login.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import aiohttp

from .. import __version__
from ..errors import R1Error
from ..store import ModelName, parse_digest
from ..store.names import OLLAMA_LIBRARY
from .transfer import DigestMismatchError, get_bytes, read_limited

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MAX_MANIFEST = 1024 * 1024  # bytes; real ones are about 1 KB
HEADERS = {"User-Agent": f"r1/{__version__}"}


class RegistryError(R1Error):
    """The registry could not be reached, or answered something r1 cannot use."""

    status = 502


@dataclass(frozen=True)
class OllamaRef:
    """One model of one registry: where its manifest and blobs are."""

    registry: str  # base URL, e.g. https://registry.ollama.ai
    namespace: str
    model: str
    tag: str

    @property
    def repo(self) -> str:
        return f"{self.namespace}/{self.model}"

    @property
    def origin(self) -> str:
        """For people: registry.ollama.ai/library/llama3.1."""
        return f"{urlsplit(self.registry).netloc}/{self.repo}"

    def __str__(self) -> str:
        return f"{self.origin}:{self.tag}"

    def manifest_url(self) -> str:
        return f"{self.registry}/v2/{quote(self.repo)}/manifests/{quote(self.tag)}"

    def blob_url(self, digest: str) -> str:
        return f"{self.registry}/v2/{quote(self.repo)}/blobs/{digest}"


def ollama_ref(name: ModelName, registry: str) -> OllamaRef:
    """`llama3.1` is library/llama3.1:latest; `ns/model:tag` and registry.ollama.ai/ns/model:tag keep their namespace."""
    return OllamaRef(registry, name.org or OLLAMA_LIBRARY, name.model, name.tag)


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str  # "sha256:<hex>"
    size: int


@dataclass(frozen=True)
class RegistryManifest:
    digest: str  # sha256 of the manifest as served: what a later pull compares
    layers: tuple[Layer, ...]


def parse_manifest(data: bytes, ref: OllamaRef) -> RegistryManifest:
    """The layers of a manifest; a RegistryError saying what is wrong with one r1 cannot read."""
    try:
        body = json.loads(data)
        layers = tuple(
            Layer(str(item["mediaType"]), parse_digest(item["digest"]), _size(item["size"]))
            for item in body["layers"]
        )
    except (ValueError, KeyError, TypeError) as exc:  # InvalidDigestError is a ValueError too
        raise RegistryError(f"the manifest of {ref} is not one r1 can read ({type(exc).__name__}: {exc})") from exc
    return RegistryManifest("sha256:" + hashlib.sha256(data).hexdigest(), layers)


def _size(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"invalid layer size {value!r}")
    return value


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
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
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
