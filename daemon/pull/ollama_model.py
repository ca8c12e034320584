"""An Ollama manifest as an r1 model: the GGUF layer (and the vision projector's) to pull, and the small layers that come with
it (template, system prompt, parameters, first messages, license) read into r1 settings.

Ollama's layers are settings a Modelfile made; r1 keeps them as a model's overrides, as
`r1 create` does, so `/api/show` and every chat see them. The template is Go's text/template
dialect: it is converted to r1's Jinja, or, when it cannot be, the GGUF's own template stays.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any

import aiohttp

from ..create import check_settings
from ..errors import BadRequest
from ..metadata.projector import PROJECTOR_FILE
from ..options import OPTION_TYPES
from ..runner.options import check_options
from ..store import ModelName, Overrides
from .ollama_registry import HEADERS, Layer, OllamaRef, RegistryManifest, fetch_layer
from .plan import PullPlan
from .quant import Choice, RemoteFile

log = logging.getLogger(__name__)

MEDIA_PREFIX = "application/vnd.ollama.image."
MODEL, ADAPTER, PROJECTOR = (MEDIA_PREFIX + kind for kind in ("model", "adapter", "projector"))
# The small layers r1 reads (a Modelfile's TEMPLATE, SYSTEM, PARAMETER, MESSAGE and LICENSE), by their
# media type's last word; "prompt" is the template's name in the oldest manifests.
SETTING_KINDS = ("template", "prompt", "system", "params", "messages", "license")
MAX_SETTING_LAYER = 4 * 1024 * 1024  # bytes; licenses, the largest of them, are tens of KB
MODEL_FILE = "model.gguf"  # the GGUF's name in the model's snapshot (the registry names blobs only)


class UnsupportedModelError(BadRequest):
    """A registry model r1 cannot run: no GGUF, or a part r1 cannot apply."""


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


async def registry_plan(session: aiohttp.ClientSession, name: ModelName, ref: OllamaRef,
                        manifest: RegistryManifest, max_template_bytes: int | None = None) -> PullPlan:
    """What pulling `ref` stores as `name`: the GGUF, and its settings read from the small layers now (off the
    event loop: converting a template takes CPU); a template over `max_template_bytes` is left out."""
    model_layer(manifest, ref)  # refuses a model r1 cannot run before any layer is fetched
    contents: list[tuple[str, bytes]] = []
    for layer in manifest.layers:
        kind = layer.media_type.removeprefix(MEDIA_PREFIX)
        if layer.media_type.startswith(MEDIA_PREFIX) and kind in SETTING_KINDS:
            contents.append((kind, await fetch_layer(session, ref, layer, MAX_SETTING_LAYER)))
    overrides, notes = await asyncio.to_thread(settings_from_layers, contents, max_template_bytes)
    files = [RemoteFile(path, layer.size, layer.digest, ref.blob_url(layer.digest))
             for path, layer in kept_layers(manifest, ref)]
    source = {"registry": ref.registry, "repo": ref.repo, "tag": ref.tag, "digest": manifest.digest}
    return PullPlan(name, ref.origin, "gguf", Choice(ref.tag, tuple(files)), source, dict(HEADERS), overrides, tuple(notes))


def kept_layers(manifest: RegistryManifest, ref: OllamaRef) -> list[tuple[str, Layer]]:
    """(path in the r1 model, layer) of the files r1 keeps: the GGUF, and its vision projector if any (the
    registry names layers by digest only; r1 names a projector so that it is known as one)."""
    projector = next((layer for layer in manifest.layers if layer.media_type == PROJECTOR), None)
    return [(MODEL_FILE, model_layer(manifest, ref)), *([(PROJECTOR_FILE, projector)] if projector else [])]


def settings_from_layers(contents: list[tuple[str, bytes]],
                         max_template_bytes: int | None = None) -> tuple[Overrides, list[str]]:
    """r1 settings from (kind, bytes) of small layers, checked as `r1 create` checks a Modelfile's,
    and notes on what was left out."""
    fields: dict[str, Any] = {}
    notes: list[str] = []
    licenses: list[str] = []
    template: str | None = None
    for kind, data in contents:
        text = data.decode("utf-8", errors="replace")
        if kind in ("template", "prompt"):
            template, note = _template(text, max_template_bytes)
            notes += [note] if note else []
        elif kind == "system":
            fields["system"] = text
        elif kind == "license":
            licenses.append(text)
        elif kind == "params":
            fields["parameters"], dropped = _parameters(text)
            notes += [f"left out parameters r1 does not use: {', '.join(dropped)}"] if dropped else []
        elif kind == "messages":
            fields["messages"] = _json(text)
    if licenses:
        fields["license"] = "\n\n".join(licenses)
    try:
        overrides = check_settings(fields)
    except BadRequest as exc:
        raise UnsupportedModelError(f"the model's settings layers are not what Ollama writes: {exc}") from exc
    for note in notes:
        log.info("%s", note)
    return replace(overrides, template=template), notes


def _template(text: str, max_bytes: int | None) -> tuple[str | None, str | None]:
    """The Go template as Jinja, or None and why the GGUF's own template is kept."""
    from ..gotemplate import GoTemplateError, to_jinja  # the daemon needs the converter only here and in create

    def too_big(template: str) -> bool:
        return max_bytes is not None and len(template.encode()) > max_bytes

    kept = f"kept the model file's own chat template: Ollama's is over the {max_bytes} bytes of R1_TEMPLATE_MAX_BYTES"
    if too_big(text):
        return None, kept
    try:
        converted = to_jinja(text)
    except GoTemplateError as exc:
        return None, f"kept the model file's own chat template: Ollama's template could not be converted ({exc})"
    return (None, kept) if too_big(converted) else (converted, None)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # left for check_settings to refuse, naming the field


def _parameters(text: str) -> tuple[dict[str, Any], list[str]]:
    """Options r1 knows, each checked as a request's would be; the names of those left out."""
    params = _json(text)
    if not isinstance(params, dict):
        return {}, ["all (the params layer is not a JSON object)"]
    checked: dict[str, Any] = {}
    dropped = sorted(set(params) - set(OPTION_TYPES))
    for key in sorted(set(params) & set(OPTION_TYPES)):
        try:
            checked |= check_options({key: params[key]})
        except BadRequest as exc:
            dropped.append(f"{key} ({exc})")
    return checked, dropped
