"""Model backends. Each is imported only inside a runner process, never by the daemon."""

from __future__ import annotations

import importlib

from .base import Backend, BackendError

# manifest format -> module under r1.daemon.backends
MODULES = {"gguf": "llama_cpp", "mlx": "mlx"}


def load_backend(fmt: str) -> type[Backend]:
    """The Backend class for a manifest format; imports the library only now."""
    if fmt not in MODULES:
        raise BackendError(f"no backend for model format {fmt!r}")
    module = importlib.import_module(f"{__name__}.{MODULES[fmt]}")
    return module.BACKEND


__all__ = ["Backend", "BackendError", "load_backend", "MODULES"]
