"""Speculative decoding, by prompt lookup or with a draft model: decode speed with drafting off and on,
on prompts whose answers repeat them (a list, code) and on one whose answer repeats nothing.

    python -m benchmarks.speculative [--tokens 128] [--runs 3] [--threads 2] [--draft] [--quick]

Gemma 3 270M Q4_K_M loaded through r1's GGUF backend in this process (the runner's engine, without the
daemon or its relay, so the figures are the decoding alone): num_ctx 2048, one slot, extra buffers off,
greedy. For each prompt, `--runs` alternating runs of each setting (lookup_drafts 0, then the default);
each row gives the medians of tokens per second of wall time, tokens per CPU-second of this process
(steadier on a shared machine), the steps taken, the drafts made and kept, and whether both settings
gave the same text. --quick: 48 tokens, one run. --draft: a draft model instead, Gemma Q4_K_M guessing for
Gemma in F32 (written once with llama.cpp's quantizer); F32 weights are decoded by kernels whose sums depend
on the rows decoded together, so "same" may say False there (speculative.py's EXACT_ROWS).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from r1.daemon.backends.llama_cpp import LlamaCppBackend
from r1.daemon.backends.speculative import LOOKUP_DRAFTS
from tests.support.tinymodels import gemma_gguf

FRUIT = "apples, bananas, cherries, dates, elderberries, figs, grapes, honeydew, kiwis, lemons, mangoes, nectarines"
PROMPTS = {
    "list (repeats)": f"Repeat this list exactly, three times.\nList: {FRUIT}.\nRepeated list: apples,",
    "code (repeats)": ("def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n"
                       "# The same functions again, unchanged:\ndef add(a, b):\n"),
    "prose (no repeat)": "The history of the printing press begins",
}


Run = tuple[str, int, float, float, int, tuple[int, int]]


def decode(backend: LlamaCppBackend, prompt: str, tokens: int) -> Run:
    """(text, tokens after the first, wall and CPU seconds for them, steps, (drafted, kept))."""
    backend.add(1, backend.tokenize(prompt), {"temperature": 0, "repeat_penalty": 1.0}, None)
    pieces: list[str] = []
    steps = 0
    while not pieces:  # the prompt, and the first token: not the decoding measured
        pieces += [text for _, text, ended in backend.step() if not ended]
    first = len(pieces)
    wall, cpu = time.perf_counter(), time.process_time()
    while backend.busy and len(pieces) < tokens:
        events = backend.step()
        steps += 1
        pieces += [text for _, text, ended in events if not ended]
        if any(ended for _, _, ended in events):
            break
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    backend.cancel(1)
    pieces = pieces[:tokens]
    return "".join(pieces), len(pieces) - first, wall, cpu, steps, backend.drafts(1)


def f32_copy(gemma: Path) -> Path:
    """Gemma 3 270M in F32, written once beside the Q4_K_M file: a model its Q4_K_M can draft for cheaply (a
    third of the bytes to read a token), as a 0.5B model drafts for a 7B one on a larger machine."""
    import ctypes

    import llama_cpp

    target = gemma.with_name("gemma-3-270m-f32.gguf")
    if not target.exists():
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype, params.allow_requantize = llama_cpp.LLAMA_FTYPE_ALL_F32, True
        partial = target.with_suffix(".partial")
        if llama_cpp.llama_model_quantize(str(gemma).encode(), str(partial).encode(), ctypes.byref(params)) != 0:
            raise SystemExit("llama.cpp could not write the F32 copy of Gemma")
        partial.rename(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draft", action="store_true",
                        help="a draft model instead of prompt lookup: Gemma Q4_K_M drafting for Gemma in F32")
    parser.add_argument("--quick", action="store_true", help="48 tokens, one run")
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.runs = 48, 1
    gemma = gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models")
    load = {"num_ctx": 2048, "num_parallel": 1, "extra_buffers": False, "num_thread": args.threads}
    if args.draft:
        model, title = f32_copy(gemma), "Gemma 3 270M F32, drafts by Gemma 3 270M Q4_K_M"
        settings = {"off": {"lookup_drafts": 0}, "draft": {"lookup_drafts": 0, "draft": str(gemma)}}
    else:
        model, title = gemma, "Gemma 3 270M Q4_K_M, drafts by prompt lookup"
        settings = {"off": {"lookup_drafts": 0}, "lookup": {"lookup_drafts": LOOKUP_DRAFTS}}
    backends = {k: LlamaCppBackend(model, {**load, **extra}) for k, extra in settings.items()}
    print(f"{title}; {args.threads} threads, {args.tokens} greedy tokens, median of {args.runs}")
    print(f"{'prompt':<18} {'drafts':>6} {'tok/s':>7} {'tok/CPU-s':>9} {'steps':>6} {'drafted':>8} {'kept':>6} same")
    for name, prompt in PROMPTS.items():
        results: dict[str, list[Run]] = {k: [] for k in backends}
        for _ in range(args.runs):
            for k, backend in backends.items():
                results[k].append(decode(backend, prompt, args.tokens))
        same = len({runs[0][0] for runs in results.values()}) == 1
        for k, runs in results.items():
            wall = statistics.median(r[1] / r[2] for r in runs)
            cpu = statistics.median(r[1] / r[3] for r in runs)
            drafted, kept = runs[-1][5]
            print(f"{name:<18} {k:>6} {wall:>7.1f} {cpu:>9.1f} {runs[-1][4]:>6} {drafted:>8} {kept:>6} {same}")
    for backend in backends.values():
        backend.close()


if __name__ == "__main__":
    main()
