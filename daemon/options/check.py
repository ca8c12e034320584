"""Ollama's `options`: which of them load a model and which steer sampling, checked by type.

Which options there are, and their types, is this package's table (options/__init__.py) (the CLI reads it
too). Load options decide the runner instance; sampling options travel with each request.
A model's own defaults (set by `r1 create` PARAMETER lines) sit under the request's options.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ..config import KV_CACHE_TYPES
from ..errors import BadRequest
from . import LOAD_OPTIONS, OPTION_TYPES, SAMPLING_OPTIONS

log = logging.getLogger(__name__)

# Ollama accepts these; r1's backends have no use for them, so they are accepted and ignored.
IGNORED_OPTIONS = frozenset({
    "numa", "typical_p", "tfs_z", "mirostat", "mirostat_tau", "mirostat_eta",
    "penalize_newline", "low_vram", "f16_kv", "vocab_only", "use_mlock", "main_gpu", "logits_all",
    "embedding_only", "rope_frequency_base", "rope_frequency_scale", "num_gqa",
})

DEFAULT_NUM_CTX = 4096  # Ollama's default; a model with a shorter context gets its own

# Whole-number options that size something, and the range where each means something (-1: as the model or
# the machine has it). Beyond it llama.cpp crashes (num_thread 1,000,000), allocates terabytes (num_batch
# 10**11) or works for minutes (repeat_last_n 10**11). split_options also holds repeat_last_n to num_ctx,
# and the llama.cpp backend num_batch to its context.
INT32_MAX = 2**31 - 1  # llama.cpp keeps these in 32-bit ints
SIZE_RANGES = {"num_ctx": (1, INT32_MAX), "num_batch": (1, INT32_MAX), "num_thread": (-1, 512),
               "num_gpu": (-1, INT32_MAX), "repeat_last_n": (-1, INT32_MAX), "num_predict": (-2, INT32_MAX),
               "num_keep": (-1, INT32_MAX)}
# Text options and the values each may take.
CHOICES = {"kv_cache_type": KV_CACHE_TYPES}


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
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= sys.float_info.max:
            return float(value)  # (a whole number of 400 digits is JSON, but no float)
    elif kind is str:
        if isinstance(value, str):
            return value
        raise BadRequest(f"{label} must be a string, not {value!r}")
    elif kind is list:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise BadRequest(f"{label} must be a string or a list of strings")
    raise BadRequest(f"{label} must be {kind.__name__ if kind is not float else 'a number'}, not {value!r}")


def check_option(name: str, value: Any, label: str | None = None) -> Any:
    """One known option's value, typed and in its range; errors call it `label` (by default "option 'NAME'")."""
    label = label or f"option '{name}'"
    checked = _coerce(label, value, OPTION_TYPES[name])
    bounds = SIZE_RANGES.get(name)
    if bounds is not None and not bounds[0] <= checked <= bounds[1]:
        raise BadRequest(f"{label} must be from {bounds[0]} to {bounds[1]}, not {checked}")
    choices = CHOICES.get(name)
    if choices is not None and checked not in choices:
        raise BadRequest(f"{label} must be one of {', '.join(choices)}, not {checked!r}")
    return checked


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
    """(load, sampling) from checked options; num_ctx defaults to 4096 or the model's own, if shorter.
    A penalty window longer than the context would size a buffer for tokens that never come."""
    load = {k: v for k, v in options.items() if k in LOAD_OPTIONS}
    sampling = {k: v for k, v in options.items() if k in SAMPLING_OPTIONS}
    if "num_ctx" not in load:
        load["num_ctx"] = min(DEFAULT_NUM_CTX, context_length or DEFAULT_NUM_CTX)
    if sampling.get("repeat_last_n", 0) > load["num_ctx"]:
        sampling["repeat_last_n"] = load["num_ctx"]
    return load, sampling


def kv_cache_type(load: dict[str, Any], fmt: str, default: str) -> str:
    """The KV cache type a runner gets: the load option, else `default` (R1_KV_CACHE_TYPE), for GGUF models.
    `load` keeps it only where it is not f16, so that asking for f16 by name shares the default's runner."""
    kind = load.pop("kv_cache_type", None)
    if fmt != "gguf":
        if kind not in (None, "f16"):
            raise BadRequest(f"option 'kv_cache_type' {kind} is for GGUF models; MLX models keep their KV cache "
                             "in the weights' own type (leave kv_cache_type unset)")
        return "f16"
    kind = kind or default
    if kind != "f16":
        load["kv_cache_type"] = kind
    return kind
