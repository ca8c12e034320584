"""A long prompt seen before: its first token the first time, then from its slot, after an unload (`r1 stop`)
and after a daemon restart, when the KV cache tiers (R1_KV_CACHE_*) keep its cells.

    python benchmarks/cached_prefix.py [--tokens 4096] [--runs 3] [--quick]

Gemma 3 270M Q4_K_M, n_threads as benchmarks/generate_speed.py, a private daemon (R1_NUM_PARALLEL=2, num_ctx
8192 on every request, temperature 0, a raw prompt of `--tokens` tokens of r1's own docs, one token asked).
Before each measured request the model is loaded and warmed by a short one, so every figure is the prompt's
cost alone. Wall time on a shared machine is noisy: each row is the median of `--runs` (each run a fresh
home, so "the first time" is always a miss). --quick: 1024 tokens, one run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))
sys.path.insert(0, str(ROOT))

from batching import Server, one, r1_commit, r1_server, wait_for  # noqa: E402
from generate_speed import PROMPT, THREADS  # noqa: E402
from long_context import histories  # noqa: E402
from tinymodels import gemma_gguf  # noqa: E402

CTX = 8192
CASES = ("the first time", "seen before, in its slot", "after an unload (r1 stop)", "after a daemon restart")


@contextlib.contextmanager
def daemon(home: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    """This environment's r1 serving from `home` (kept between daemons)."""
    r1 = str(Path(sys.executable).with_name("r1"))
    env = {**os.environ, "R1_HOME": str(home), "R1_SOCKET": str(home / "r1.sock"), "R1_NO_AUTOSTART": "1",
           "R1_NUM_PARALLEL": "2"}
    process = subprocess.Popen([r1, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(home / "r1.sock", process, "the r1 daemon")
        yield r1_server(str(home / "r1.sock"), CTX), env
    finally:
        process.terminate()
        process.wait(30)


def run(gemma: Path, text: str) -> list[float]:
    """Seconds to the first token in each case, with a fresh home."""
    home = Path(tempfile.mkdtemp(prefix="r1c-", dir="/tmp"))
    r1 = str(Path(sys.executable).with_name("r1"))
    try:
        with daemon(home) as (server, env):
            subprocess.run([r1, "import", str(gemma), "--name", "gemma"], env=env, check=True, capture_output=True)
            one(server, PROMPT, 1)  # load and warm
            first = one(server, text, 1).ttft
            in_slot = one(server, text, 1).ttft
            subprocess.run([r1, "stop", "gemma"], env=env, check=True, capture_output=True)
            while "gemma" in subprocess.run([r1, "ps"], env=env, capture_output=True, text=True).stdout:
                time.sleep(0.1)
            one(server, PROMPT, 1)
            after_unload = one(server, text, 1).ttft
        with daemon(home) as (server, _):
            one(server, PROMPT, 1)
            after_restart = one(server, text, 1).ttft
        return [first, in_slot, after_unload, after_restart]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096, help="tokens in the long prompt")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1024 tokens, one run")
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.runs = 1024, 1
    gemma = gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models")
    (text,) = histories(gemma, 1, args.tokens)
    print(f"r1 at {r1_commit()}")
    print(f"Gemma 3 270M Q4_K_M, n_threads={THREADS}, num_ctx {CTX}, a prompt of {args.tokens} tokens, "
          f"median of {args.runs}\n", flush=True)
    runs = [run(gemma, text) for _ in range(args.runs)]
    medians = [statistics.median(r[i] for r in runs) for i in range(len(CASES))]
    print(f"{'first token of the long prompt':<36}{'ms':>10}{'x faster':>10}")
    for case, seconds in zip(CASES, medians):
        print(f"{case:<36}{seconds * 1000:>10.0f}{medians[0] / seconds:>10.1f}")


if __name__ == "__main__":
    main()
