"""The GPUs llama.cpp sees and their free memory, read in the runner through ggml's backend device API.

llama-cpp-python binds llama.h only, so the four ggml functions this needs are bound here with ctypes
from the libggml beside its libllama (llama.cpp has loaded it already, with its backends). The daemon
never imports this: it learns of devices from the runners' load results.

`offload` picks n_gpu_layers for a load: the option num_gpu where the model or request sets one,
otherwise as many layers as fit the device with the most free memory (gpu_fit.fit). llama.cpp spreads
offloaded layers over every GPU by their memory; r1 counts on the largest one alone, which errs toward
the host where there are several. A CPU-only build has no GPU device: nothing is offloaded.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from ..gpu_fit import Layers, Split, fit, split

# enum ggml_backend_dev_type: CPU 0, GPU 1 (dedicated memory), IGPU 2 (integrated), ACCEL 3 (BLAS, AMX).
GPU_TYPES = {1: "gpu", 2: "igpu"}


@dataclass(frozen=True)
class Device:
    name: str  # "CUDA0", "Metal", "Vulkan0"
    description: str  # "NVIDIA H100 80GB HBM3"
    kind: str  # "gpu" or "igpu"
    free: int
    total: int

    def to_frame(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def _ggml() -> ctypes.CDLL:
    library = Path(llama_cpp.llama_cpp._lib._name)  # libllama.so / .dylib / llama.dll
    ggml = ctypes.CDLL(str(library.with_name(library.name.replace("llama", "ggml", 1))))
    ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
    ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
    for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(ggml, name).argtypes = [ctypes.c_void_p]
        getattr(ggml, name).restype = ctypes.c_char_p
    ggml.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_dev_type.restype = ctypes.c_int
    size_p = ctypes.POINTER(ctypes.c_size_t)
    ggml.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, size_p, size_p]
    ggml.ggml_backend_dev_memory.restype = None
    return ggml


def gpus() -> list[Device]:
    """The GPU devices of this llama.cpp build, with their free memory now."""
    ggml = _ggml()
    found = []
    for index in range(ggml.ggml_backend_dev_count()):
        device = ggml.ggml_backend_dev_get(index)
        kind = GPU_TYPES.get(ggml.ggml_backend_dev_type(device))
        if kind is None:
            continue
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        ggml.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
        found.append(Device(ggml.ggml_backend_dev_name(device).decode(errors="replace"),
                            ggml.ggml_backend_dev_description(device).decode(errors="replace"), kind,
                            free.value, total.value))
    return found


def offload(load: dict[str, Any], devices: list[Device]) -> Split | None:
    """The split for this load: by num_gpu where set, else what fits the roomiest device; None where the
    daemon sent no layer sizes (then num_gpu, or all layers, as llama.cpp takes them)."""
    if "layers" not in load:
        return None
    sizes, slots = Layers.from_frame(load["layers"]), load.get("num_parallel") or 1
    if not devices:
        return split(sizes, 0, slots)  # nothing to offload to, whatever num_gpu says
    free = max(device.free for device in devices)
    return fit(sizes, free, slots, load.get("num_gpu"))
