"""An Ollama model's small layers (template, system prompt, parameters, first messages, license) read
into r1 settings, whether a pull fetched them from the registry or an import found them in Ollama's store.

Ollama's layers are settings a Modelfile made; r1 keeps them as a model's overrides, as
`r1 create` does, so `/api/show` and every chat see them. The template is Go's text/template
dialect: it is converted to r1's Jinja, or, when it cannot be, the GGUF's own template stays.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from ..errors import BadRequest
from ..options import OPTION_TYPES
from ..options.check import check_options
from ..store import Overrides
from .ollama_manifest import UnsupportedModelError
from .settings import check_settings

log = logging.getLogger(__name__)


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
    from ..templates.go import GoTemplateError, to_jinja  # loaded only when a model brings a template

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
