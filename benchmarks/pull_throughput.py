"""Loopback pull speed of the 253 MB Gemma GGUF: `r1 pull` beside huggingface_hub's hf_hub_download.

    python -m benchmarks.pull_throughput [--runs 3]

Both fetch the same file from the tests' fake Hub on 127.0.0.1 (tests/support/fakehub.py), each run
into an empty store or cache. r1's time is the whole `r1 pull` command (resolve, ranged
download, sha256, commit, manifest); hf_hub_download's is the call alone, in-process.
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

os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from tests.support.fakehub import FakeHub
from tests.support.tinymodels import gemma_gguf

REPO, FILE = "bench/gemma-3-270m-GGUF", "gemma-3-270m-Q4_K_M.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from huggingface_hub import hf_hub_download

    gemma = gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models")
    size = gemma.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="r1p-", dir="/tmp"))
    r1 = str(Path(sys.executable).with_name("r1"))
    with FakeHub() as hub:
        hub.add_repo(REPO, {FILE: gemma})
        env = {**os.environ, **hub.env(), "R1_HOME": str(work / "home"), "R1_SOCKET": str(work / "r1.sock"),
               "R1_NO_AUTOSTART": "1", "HF_HOME": str(work / "hf")}
        daemon = subprocess.Popen([r1, "serve"], env=env, stderr=subprocess.DEVNULL)
        try:
            while not (work / "r1.sock").exists():
                time.sleep(0.05)
            times: dict[str, list[float]] = {"r1 pull": [], "hf_hub_download": []}
            for run in range(args.runs):
                start = time.perf_counter()
                subprocess.run([r1, "pull", REPO], env=env, check=True, capture_output=True)
                times["r1 pull"].append(time.perf_counter() - start)
                subprocess.run([r1, "rm", REPO], env=env, check=True, capture_output=True)

                start = time.perf_counter()
                hf_hub_download(REPO, FILE, endpoint=hub.url, cache_dir=work / f"hf-cache-{run}")
                times["hf_hub_download"].append(time.perf_counter() - start)
                shutil.rmtree(work / f"hf-cache-{run}")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(15)
            shutil.rmtree(work, ignore_errors=True)

    base = statistics.median(times["r1 pull"])
    print(f"{'':<18}{'median':>9}{'MB/s':>8}{'vs r1':>8}   ({size / 1e6:.0f} MB, {args.runs} runs each, loopback)")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"{label:<18}{median:>8.2f}s{size / median / 1e6:>8.0f}{median / base:>7.2f}x")


if __name__ == "__main__":
    main()
