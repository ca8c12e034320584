"""llama.cpp's extra buffer types on this machine: whether GGUF runners use them, what they cost
in memory, and what happens when they crash.

llama.cpp copies some weights into "extra" buffers laid out for faster CPU kernels: AMX tiles
on Sapphire Rapids-class Xeons, repacked blocks for AVX2, AVX-512 and Arm dot products. On some
AMX machines a native build dies with SIGSEGV in `ggml_backend_amx_mul_mat` on the first decode
(llama.cpp issue 20824, Ollama issue 17006). The same build runs fine with the extra buffers off
(`llama_model_params.use_extra_bufts = false`).

With R1_LLAMA_EXTRA_BUFFERS=auto (the default) runners use them. A GGUF runner warms up at load
(a small decode), so a crashing kernel kills it while loading; the scheduler then loads the model
once more without extra buffers, and `remember` records the crash in r1.db (kernel_crashes.py) for this
llama-cpp-python version and this CPU: later loads, after restarts too, go straight to the safe
mode. A new llama-cpp-python version tries the fast kernels again.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import logging
import platform
import signal
import sys
from dataclasses import dataclass
from typing import Protocol

from .config import EXTRA_BUFFER_MODES

log = logging.getLogger(__name__)

# What a crashing kernel dies of; a runner killed by anything else (SIGKILL, an abort) proves nothing.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGILL, signal.SIGBUS})

# Weight types llama.cpp puts in extra buffers, by CPU feature (llama-cpp-python 0.3.36's llama.cpp:
# qtype_has_amx_kernels in ggml-cpu/amx/common.h, ggml_repack_get_optimal_repack_type in ggml-cpu/repack.cpp).
REPACKED_BY_FEATURE = {
    "amx_int8": frozenset({"Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"}),
    "avx2": frozenset({"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"}),
    "avx512f": frozenset({"Q2_K"}),
    "asimddp": frozenset({"Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q8_0", "IQ4_NL", "MXFP4"}),  # Arm dot product
}


@dataclass(frozen=True)
class Machine:
    """This machine as far as llama.cpp's kernels go: the engine version and the CPU."""

    engine: str  # "llama-cpp-python 0.3.36"
    cpu: str  # "Intel(R) Xeon(R) Platinum 8488C (x86_64, flags 1f3a9c0e)"
    flags: frozenset[str]

    @classmethod
    def here(cls) -> Machine:
        try:
            engine = f"llama-cpp-python {importlib.metadata.version('llama-cpp-python')}"
        except importlib.metadata.PackageNotFoundError:
            engine = "llama-cpp-python (not installed)"
        name, flags = _cpu()
        # The flags are part of the identity: a VM may show the same model name with AMX hidden.
        digest = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:8]
        return cls(engine, f"{name} ({platform.machine()}, flags {digest})", flags)

    @property
    def repacked_types(self) -> frozenset[str]:
        """Weight types llama.cpp copies into extra buffers on this CPU (CPU layers only)."""
        if sys.platform == "darwin":
            return frozenset()  # Metal holds the layers; extra buffers are for CPU ones
        return frozenset().union(*(types for flag, types in REPACKED_BY_FEATURE.items() if flag in self.flags))


def _cpu() -> tuple[str, frozenset[str]]:
    """The CPU's model name and feature flags, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            first = f.read().split("\n\n", 1)[0]
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU", frozenset()
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
    name = fields.get("model name") or fields.get("hardware") or f"CPU part {fields.get('cpu part', '?')}"
    return name, frozenset((fields.get("flags") or fields.get("features") or "").split())


class CrashBook(Protocol):
    """Where crashes are remembered (kernel_crashes.KernelCrashes; a dict in unit tests)."""

    def kernel_crash(self, engine: str, cpu: str) -> str | None: ...

    def record_kernel_crash(self, engine: str, cpu: str, reason: str) -> None: ...


class ExtraBuffers:
    """R1_LLAMA_EXTRA_BUFFERS for one daemon: auto, on or off, and what is known of this machine."""

    def __init__(self, mode: str, machine: Machine, book: CrashBook, kv_cache_type: str = "f16") -> None:
        if mode not in EXTRA_BUFFER_MODES:
            raise ValueError(f"extra buffer mode must be one of {EXTRA_BUFFER_MODES}, not {mode!r}")
        self.mode = mode
        # R1_KV_CACHE_TYPE: the other choice every GGUF runner loads with that the estimate must know.
        self.kv_cache_type = kv_cache_type
        self.machine = machine
        self._book = book
        self.crash = book.kernel_crash(machine.engine, machine.cpu)  # why they are off in auto mode, if they are
        if self.crash and mode == "auto":
            log.info("llama.cpp's extra buffer types stay off with %s on this CPU: %s", machine.engine, self.crash)

    def use_for(self, fmt: str) -> bool:
        """Whether a runner for a model of this format loads with extra buffers."""
        if fmt != "gguf" or self.mode == "off":
            return False
        return self.mode == "on" or self.crash is None

    def repacked_types(self, fmt: str) -> frozenset[str]:
        """For the memory estimate: the weight types that get a repacked copy."""
        return self.machine.repacked_types if self.use_for(fmt) else frozenset()

    def falls_back(self, used: bool, returncode: int | None) -> bool:
        """Whether a runner that died while loading should be started again without extra buffers."""
        if not used or self.mode != "auto" or returncode is None or returncode >= 0:
            return False
        return -returncode in CRASH_SIGNALS

    async def remember(self, model: str, death: str) -> None:
        """The safe mode worked after a crash: say so once, and keep it for this engine and CPU."""
        if self.crash is not None:
            return  # another model's load crashed at the same time and said it already
        self.crash = f"{model}'s runner {death}"
        log.warning(
            "llama.cpp crashed while loading %s with its extra buffer types (AMX or repacked weights) on this CPU, "
            "%s: the runner %s. Loaded it without them: slower on the CPU, but it answers. r1 remembers this for "
            "%s on this CPU, so no load crashes again (llama.cpp issue 20824, Ollama issue 17006; "
            "R1_LLAMA_EXTRA_BUFFERS=on forces them, a new llama-cpp-python version tries them again).",
            model, self.machine.cpu, death, self.machine.engine)
        await asyncio.to_thread(self._book.record_kernel_crash, self.machine.engine, self.machine.cpu, self.crash)
