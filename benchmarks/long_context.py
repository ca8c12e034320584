"""Long conversations beside short ones: a short request's first token and decode rate on an idle model,
beside three slots that hold long histories (a coding agent's), and while a long prompt is evaluated.

    python -m benchmarks.long_context [--history 25000] [--tokens 64] [--runs 3]

Gemma 3 270M Q4_K_M, n_threads as benchmarks/generate_speed.py, a private daemon with R1_NUM_PARALLEL=4,
num_ctx 32768 on every request, temperature 0, raw prompts. The short request is the same prompt each time,
so it always finds its own slot (and never takes a history's). Decode rate is (tokens - 1) / (last token -
first token), seen by the caller; each figure is the median of `--runs`. The three histories are distinct
texts of `--history` tokens each, sent together with num_predict 1; then a fourth, new one is sent and the
short request follows it a second later. Works on any r1 commit (the daemon is this environment's `r1`),
so the table can be compared before and after: for an older commit, put a folder holding `r1/daemon` and
`r1/cli` of that checkout first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.batching import Answer, Server, generate, one, private_daemon, r1_commit
from benchmarks.generate_speed import PROMPT, THREADS
from tests.support.tinymodels import gemma_gguf

ROOT = Path(__file__).resolve().parent

CTX = 32768
SLOTS = 4
TEXTS = [ROOT.parent / "README.md", *sorted((ROOT.parent / "docs").glob("*.md"))]


def histories(gemma: Path, count: int, length: int) -> list[str]:
    """`count` distinct texts of `length` tokens each: r1's own docs, each from its own number on."""
    from llama_cpp import Llama

    vocab = Llama(str(gemma), vocab_only=True, verbose=False)
    corpus = "\n\n".join(path.read_text() for path in TEXTS)
    texts = []
    for n in range(count):
        text = f"History {n + 1}.\n"
        while len(tokens := vocab.tokenize(text.encode(), add_bos=False)) < length:
            text += corpus
        texts.append(vocab.detokenize(tokens[:length]).decode(errors="ignore"))
    return texts


def short(server: Server, tokens: int, runs: int) -> tuple[float, float]:
    """Median (first token in seconds, decode tokens/s) of the short request."""
    answers = [one(server, PROMPT, tokens) for _ in range(runs)]
    return statistics.median(a.ttft for a in answers), statistics.median(a.decode_rate for a in answers)


def beside_a_long_prompt(server: Server, text: str, tokens: int) -> tuple[float, float, float]:
    """The short request sent a second after a long prompt: its first token, its decode rate, and how
    long the long prompt took to its first token."""
    long = Answer()
    thread = threading.Thread(target=generate, args=(server, text, 1, long))
    thread.start()
    time.sleep(1)
    answer = one(server, PROMPT, tokens)
    thread.join()
    return answer.ttft, answer.decode_rate, long.ttft


def line(what: str, ttft: float, rate: float, idle: tuple[float, float]) -> None:
    print(f"{what:<44}{ttft * 1000:>10.0f}{rate:>10.1f}{rate / idle[1]:>10.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=25000, help="tokens in each long history")
    parser.add_argument("--tokens", type=int, default=64, help="tokens the short request generates")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    gemma = gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models")
    texts = histories(gemma, SLOTS, args.history)
    print(f"r1 at {r1_commit()}")
    print(f"Gemma 3 270M Q4_K_M, n_threads={THREADS}, num_ctx {CTX}, R1_NUM_PARALLEL={SLOTS}, histories of "
          f"{args.history} tokens, the short request {args.tokens} tokens, median of {args.runs}\n", flush=True)
    with private_daemon(gemma, SLOTS, CTX) as server:
        one(server, PROMPT, 8)  # load and warm the runner
        print(f"{'the short request':<44}{'first ms':>10}{'tok/s':>10}{'x idle':>10}", flush=True)
        idle = short(server, args.tokens, args.runs)
        line("on the idle model", *idle, idle)
        started = time.perf_counter()
        held = [Answer() for _ in range(SLOTS - 1)]
        threads = [threading.Thread(target=generate, args=(server, text, 1, answer))
                   for text, answer in zip(texts, held)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.perf_counter() - started
        line(f"beside {SLOTS - 1} slots holding histories", *short(server, args.tokens, args.runs), idle)
        ttft, rate, long_ttft = beside_a_long_prompt(server, texts[-1], args.tokens)
        line("while a new history is evaluated", ttft, rate, idle)
        print(f"\n{SLOTS - 1} histories evaluated together in {took:.1f} s ({(SLOTS - 1) * args.history / took:.0f} "
              f"tok/s); the fourth, beside the short request, took {long_ttft:.1f} s to its first token", flush=True)


if __name__ == "__main__":
    main()
