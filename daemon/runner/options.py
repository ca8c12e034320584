"""Ollama's `options`: which of them load a model and which steer sampling, checked by type.

Which options there are, and their types, is daemon/options.py's table (the CLI reads it
too). Load options decide the runner instance; sampling options travel with each request.
A model's own defaults (set by `r1 create` PARAMETER lines) sit under the request's options.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import BadRequest
from ..options import LOAD_OPTIONS, OPTION_TYPES, SAMPLING_OPTIONS

log = logging.getLogger(__name__)

# Ollama accepts these; r1's backends have no use for them, so they are accepted and ignored.
IGNORED_OPTIONS = frozenset({
    "numa", "num_keep", "typical_p", "tfs_z", "mirostat", "mirostat_tau", "mirostat_eta",
    "penalize_newline", "low_vram", "f16_kv", "vocab_only", "use_mlock", "main_gpu", "logits_all",
    "embedding_only", "rope_frequency_base", "rope_frequency_scale", "num_gqa",
})

DEFAULT_NUM_CTX = 4096  # Ollama's default; a model with a shorter context gets its own


def _coerce(label: str, value: Any, kind: type) -> Any:
    """`value` as `kind`; a BadRequest that calls the value `label` ("option 'top_k'") otherwise."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is list:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise BadRequest(f"{label} must be a string or a list of strings")
    raise BadRequest(f"{label} must be {kind.__name__ if kind is not float else 'a number'}, not {value!r}")


def check_option(name: str, value: Any, label: str | None = None) -> Any:
    """One known option's value, typed; errors call it `label` (by default "option 'NAME'")."""
    return _coerce(label or f"option '{name}'", value, OPTION_TYPES[name])


def check_options(options: Any) -> dict[str, Any]:
    """Typed, known options; unknown names are logged and dropped, as Ollama does."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise BadRequest("field 'options' must be an object")
    checked: dict[str, Any] = {}
    for name, value in options.items():
        if name in OPTION_TYPES:
            if value is not None:
                checked[name] = check_option(name, value)
        elif name not in IGNORED_OPTIONS:
            log.warning("ignoring unknown option %r", name)
    return checked


def split_options(options: dict[str, Any], context_length: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(load, sampling) from checked options; num_ctx defaults to 4096 or the model's own, if shorter."""
    load = {k: v for k, v in options.items() if k in LOAD_OPTIONS}
    sampling = {k: v for k, v in options.items() if k in SAMPLING_OPTIONS}
    if "num_ctx" not in load:
        load["num_ctx"] = min(DEFAULT_NUM_CTX, context_length or DEFAULT_NUM_CTX)
    elif load["num_ctx"] < 1:
        raise BadRequest(f"option 'num_ctx' must be at least 1, not {load['num_ctx']}")
    return load, sampling
