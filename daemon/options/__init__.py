"""Ollama's `options` that r1 knows, and the type of each: the one table behind the daemon's
checks (check.py, beside this) and the CLI's Modelfile PARAMETER lines and `/set parameter`.

Standard library only and cheap to import, like config.py: the CLI loads it, and importing
options.check imports this first, so the table lives here and the checks in a module of their own.
"""

from __future__ import annotations

# Load options decide the runner instance (two requests with different num_ctx need two runners).
LOAD_OPTIONS: dict[str, type] = {
    "num_ctx": int,
    "num_gpu": int,  # layers to offload; absent: all where the build has a GPU or Metal
    "num_thread": int,
    "num_batch": int,
    "use_mmap": bool,
    "kv_cache_type": str,  # f16, q8_0 or q4_0 (config.KV_CACHE_TYPES); absent: R1_KV_CACHE_TYPE
}
# Sampling options travel with each request.
SAMPLING_OPTIONS: dict[str, type] = {
    "temperature": float,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "repeat_penalty": float,
    "repeat_last_n": int,
    "presence_penalty": float,
    "frequency_penalty": float,
    "seed": int,
    "num_predict": int,
    "stop": list,  # a list of strings; a Modelfile gives one per PARAMETER line
    # Ollama's: tokens at the start of the prompt kept when the context is short. r1 does not shift the context
    # mid-answer; a chat that does not fit loses its oldest messages, but none within these tokens (-1: all of them).
    "num_keep": int,
}
OPTION_TYPES: dict[str, type] = {**LOAD_OPTIONS, **SAMPLING_OPTIONS}
