"""Ollama's model as data: a manifest per namespace, model and tag whose layers name sha256-addressed
blobs by media type (the GGUF, its vision projector, and small layers: template, system prompt,
parameters...). Its registry serves these (pull/ollama_registry.py) and its store keeps them on disk
(tools/ollama.py): both read them with what is here.

A manifest is served at
  GET {registry}/v2/{namespace}/{model}/manifests/{tag}
  (Accept: application/vnd.docker.distribution.manifest.v2+json)
and each layer at
  GET {registry}/v2/{namespace}/{model}/blobs/sha256:<hex>
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from ..errors import BadGateway, BadRequest
from ..metadata.projector import PROJECTOR_FILE
from ..store import ModelName, parse_digest
from ..store.names import OLLAMA_LIBRARY

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MAX_MANIFEST = 1024 * 1024  # bytes; real ones are about 1 KB
MEDIA_PREFIX = "application/vnd.ollama.image."
MODEL, ADAPTER, PROJECTOR = (MEDIA_PREFIX + kind for kind in ("model", "adapter", "projector"))
# The small layers r1 reads (a Modelfile's TEMPLATE, SYSTEM, PARAMETER, MESSAGE and LICENSE), by their
# media type's last word; "prompt" is the template's name in the oldest manifests.
SETTING_KINDS = ("template", "prompt", "system", "params", "messages", "license")
MAX_SETTING_LAYER = 4 * 1024 * 1024  # bytes; licenses, the largest of them, are tens of KB
MODEL_FILE = "model.gguf"  # the GGUF's name in the model's snapshot (the registry names blobs only)


class RegistryError(BadGateway):
    """The registry could not be reached, or answered something r1 cannot use."""


class UnsupportedModelError(BadRequest):
    """A registry model r1 cannot run: no GGUF, or a part r1 cannot apply."""


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


def model_layer(manifest: RegistryManifest, ref: OllamaRef) -> Layer:
    """The one GGUF layer; refuses what r1 cannot run before any byte moves."""
    if any(layer.media_type == ADAPTER for layer in manifest.layers):
        raise UnsupportedModelError(f"{ref} applies a LoRA adapter to its base model, which r1 cannot do; "
                                    "pull the base model instead")
    models = [layer for layer in manifest.layers if layer.media_type == MODEL]
    if len(models) != 1:
        kinds = ", ".join(sorted({layer.media_type for layer in manifest.layers})) or "none"
        raise UnsupportedModelError(f"{ref} is not a model r1 can run: r1 needs exactly one GGUF layer ({MODEL}), "
                                    f"and its manifest has {len(models)} (layers: {kinds})")
    return models[0]


def kept_layers(manifest: RegistryManifest, ref: OllamaRef) -> list[tuple[str, Layer]]:
    """(path in the r1 model, layer) of the files r1 keeps: the GGUF, and its vision projector if any (the
    registry names layers by digest only; r1 names a projector so that it is known as one)."""
    projector = next((layer for layer in manifest.layers if layer.media_type == PROJECTOR), None)
    return [(MODEL_FILE, model_layer(manifest, ref)), *([(PROJECTOR_FILE, projector)] if projector else [])]


def setting_layers(manifest: RegistryManifest) -> list[tuple[str, Layer]]:
    """(kind, layer) of the small layers r1 reads into settings, in the manifest's order."""
    kinds = [(layer.media_type.removeprefix(MEDIA_PREFIX), layer) for layer in manifest.layers
             if layer.media_type.startswith(MEDIA_PREFIX)]
    return [(kind, layer) for kind, layer in kinds if kind in SETTING_KINDS]
