"""Whole-process wall time of `r1 list` against a running daemon, beside `llm models list`.

    python -m benchmarks.cli_latency [--runs 10]

Starts a daemon on a temp socket and store, imports the bundled SmolLM2 model (the
`bundled` extra), then times each command N times after one warm-up run and prints
median/min/max. `llm` (Simon Willison's, installed with the bundled model) is the
nearest peer here that lists local models from a CLI. The commands are those beside the
Python that runs this: run it with a regular install's Python (`pip install .`) to time what
users get; an editable install adds its import hook to every start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(command: list[str], env: dict[str, str], runs: int) -> list[float]:
    subprocess.run(command, env=env, capture_output=True, check=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="r1b-", dir="/tmp"))
    env = {**os.environ, "R1_HOME": str(work / "home"), "R1_SOCKET": str(work / "r1.sock"), "R1_NO_AUTOSTART": "1"}
    daemon = subprocess.Popen([str(BIN / "r1"), "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (work / "r1.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        subprocess.run([str(BIN / "r1"), "import", "--bundled"], env=env, check=True, capture_output=True)

        commands = {"r1 list": [str(BIN / "r1"), "list"]}
        if (BIN / "llm").exists():
            commands["llm models list"] = [str(BIN / "llm"), "models", "list"]
        results = {label: timed(cmd, env, args.runs) for label, cmd in commands.items()}
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
        shutil.rmtree(work, ignore_errors=True)

    base = statistics.median(results["r1 list"])
    print(f"{'command':<18}{'median':>10}{'min':>10}{'max':>10}{'vs r1':>8}   ({args.runs} runs each)")
    for label, times in results.items():
        median = statistics.median(times)
        print(f"{label:<18}{median * 1000:>8.1f}ms{min(times) * 1000:>8.1f}ms{max(times) * 1000:>8.1f}ms{median / base:>7.1f}x")


if __name__ == "__main__":
    main()
