"""A stand-in for llama.cpp's AMX crash, for tests on any machine.

With this folder on PYTHONPATH, every Python process (the daemon, and the runners it starts)
loads llama-cpp-python such that a process that loaded a model with llama.cpp's extra buffer
types on dies with SIGSEGV at its first decode, as native builds do on some Sapphire
Rapids-class Xeons (FACTS.md: "llama.cpp on CPUs with AMX"). Models loaded with them off
decode normally. Only the two C entry points are wrapped; the rest is the real library.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import signal
import sys
from types import ModuleType
from typing import Any


def _crash_with_extra_buffers(library: ModuleType) -> None:
    load_model, decode = library.llama_model_load_from_file, library.llama_decode
    loaded_with_extra_buffers = False

    def load_model_then_remember(path: bytes, params: Any) -> Any:
        nonlocal loaded_with_extra_buffers
        loaded_with_extra_buffers |= bool(params.use_extra_bufts)
        return load_model(path, params)

    def decode_or_crash(ctx: Any, batch: Any) -> int:
        if loaded_with_extra_buffers:
            sys.stderr.write("crashing_llama: SIGSEGV in ggml_backend_amx_mul_mat (test double)\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSEGV)
        return decode(ctx, batch)

    library.llama_model_load_from_file = load_model_then_remember
    library.llama_decode = decode_or_crash


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Wraps llama_cpp.llama_cpp (the ctypes bindings) right after it is first imported."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "llama_cpp.llama_cpp":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _crash_with_extra_buffers(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _WrapOnImport())
