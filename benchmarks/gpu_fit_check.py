"""Partial GPU offload on a machine with a GPU: the devices llama.cpp sees, how many of Gemma 3 270M's
layers r1's fit offloads, the host and GPU bytes it plans, and greedy decode speed for each case.

    python -m benchmarks.gpu_fit_check [--num-ctx 8192] [--tokens 128] [--quick]

Needs a llama-cpp-python built for the GPU (CUDA, Metal, Vulkan); on a CPU-only build every row says
0 layers and 100% CPU. Cases: the fit with the device's real free memory (Gemma fits whole on any GPU),
the fit with the device's free memory capped so that about half the layers fit (`--cap`, MiB above the
fit's margin; default: half of the model's GPU share), num_gpu 0 (CPU only) and num_gpu 4. Each row is
one LlamaCppBackend loaded as a runner loads it (the daemon's layer sizes in its load dict), then a
greedy answer of `--tokens` tokens; the answers of every case must be the same text. tok/s is wall time
after the first token; CPU s/token is this process's CPU time per token.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from r1.daemon.backends import devices, llama_cpp
from r1.daemon.backends.llama_cpp import LlamaCppBackend
from r1.daemon.gpu_fit import MARGIN, fit
from r1.daemon.memory import MiB, estimate, layers
from r1.daemon.metadata import read_metadata
from tests.support.tinymodels import gemma_gguf

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def answer(backend: LlamaCppBackend, tokens: int) -> tuple[str, float, float]:
    """Greedy text of `tokens` tokens, tokens/s and CPU seconds per token after the first."""
    backend.add(1, backend.tokenize(PROMPT), {"temperature": 0, "num_predict": tokens}, None, draft=False)
    pieces: list[str] = []
    while not pieces:
        pieces += [text for _, text, ended in backend.step() if not ended]
    wall, cpu = time.perf_counter(), time.process_time()
    while backend.busy and len(pieces) < tokens:
        events = backend.step()
        pieces += [text for _, text, ended in events if not ended]
        if any(ended for _, _, ended in events):
            break
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    backend.cancel(1)
    decoded = max(1, len(pieces) - 1)
    return "".join(pieces), decoded / wall, cpu / decoded


def run_case(gemma: Path, load: dict, cap: int | None, tokens: int) -> tuple[dict, str, float, float]:
    real = devices.gpus
    if cap is not None:  # a smaller GPU: the same device with at most `cap` bytes free
        llama_cpp.gpus = lambda: [devices.Device(d.name, d.description, d.kind, min(d.free, cap), d.total)
                                  for d in real()]
    try:
        backend = LlamaCppBackend(gemma, load)
    finally:
        llama_cpp.gpus = real
    try:
        text, rate, cpu = answer(backend, tokens)
        return backend.offload or {}, text, rate, cpu
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-ctx", type=int, default=8192)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--cap", type=int, default=0, help="MiB above the margin for the capped case (0: half)")
    parser.add_argument("--quick", action="store_true", help="32 tokens at num_ctx 2048")
    args = parser.parse_args()
    if args.quick:
        args.num_ctx, args.tokens = 2048, 32
    gemma = gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models")
    facts = read_metadata("gguf", [gemma])
    sizes = layers(facts, estimate(facts, gemma.stat().st_size, args.num_ctx))
    found = devices.gpus()
    print("devices:", "; ".join(f"{d.name} ({d.description}, {d.kind}): {d.free / MiB:.0f} of {d.total / MiB:.0f} "
                                f"MiB free" for d in found) or "none (a CPU-only llama.cpp build)")
    half = MARGIN + (args.cap * MiB or fit(sizes, 1 << 50).device // 2)
    base = {"num_ctx": args.num_ctx, "num_parallel": 1, "extra_buffers": False, "layers": sizes.to_frame(),
            "lookup_drafts": 0}
    cases = [("fit, real free memory", {}, None), (f"fit, {(half - MARGIN) / MiB:.0f} MiB + margin free", {}, half),
             ("num_gpu 0", {"num_gpu": 0}, None), ("num_gpu 4", {"num_gpu": 4}, None)]
    print(f"\nGemma 3 270M Q4_K_M, num_ctx {args.num_ctx}, {args.tokens} tokens, greedy\n")
    print(f"{'case':<32} {'layers':>7} {'host MiB':>9} {'GPU MiB':>8} {'tok/s':>7} {'CPU s/tok':>10}  same text")
    first = None
    for label, options, cap in cases:
        offload, text, rate, cpu = run_case(gemma, {**base, **options}, cap, args.tokens)
        first = text if first is None else first
        print(f"{label:<32} {offload.get('layers', '?'):>3}/{offload.get('total_layers', '?'):<3} "
              f"{offload.get('host', 0) / MiB:>9.0f} {offload.get('device', 0) / MiB:>8.0f} {rate:>7.1f} {cpu:>10.4f}  "
              f"{'yes' if text == first else 'NO'}")


if __name__ == "__main__":
    main()
