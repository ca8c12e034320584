"""Importing Gemma 3 270M Q4_K_M (253 MB) from Ollama's store, the Hugging Face cache and LM Studio's
folder with `r1 import --from`, checked (every byte hashed) and with --trust, beside `cp` of the file.

    python -m benchmarks.tool_import [--runs 3]

Each tool's store is laid out as that tool lays it out, in one temporary folder on the same file
system as r1's store (so r1 can hard-link), from the same GGUF. Each run imports into a fresh daemon's
store and times the `r1 import` command whole (process start, discovery, linking, hashing, the
manifest); `cp` copies the file to a new name in the same folder. The page cache is warm: the file is
read once before timing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.tinymodels import gemma_gguf

NAMES = {"ollama": "gemma3:270m", "hf": "hf.co/ggml-org/gemma-3-270m-GGUF:Q4_K_M", "lmstudio": "hf.co/lmstudio-community/gemma-3-270m-GGUF:Q4_K_M"}


def lay_out(gguf: Path, base: Path) -> dict[str, Path]:
    """The GGUF in each tool's store, as that tool keeps it."""
    data_sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    ollama = base / "ollama"
    (ollama / "blobs").mkdir(parents=True)
    shutil.copyfile(gguf, ollama / "blobs" / f"sha256-{data_sha}")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "0" * 64,
                           "size": 0},
                "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{data_sha}",
                            "size": gguf.stat().st_size}]}
    folder = ollama / "manifests" / "registry.ollama.ai" / "library" / "gemma3"
    folder.mkdir(parents=True)
    (folder / "270m").write_text(json.dumps(manifest))
    hf = base / "hf" / "models--ggml-org--gemma-3-270m-GGUF"
    (hf / "blobs").mkdir(parents=True)
    shutil.copyfile(gguf, hf / "blobs" / data_sha)
    snapshot = hf / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "gemma-3-270m-Q4_K_M.gguf").symlink_to(f"../../blobs/{data_sha}")
    (hf / "refs").mkdir()
    (hf / "refs" / "main").write_text("a" * 40)
    lmstudio = base / "lmstudio" / "lmstudio-community" / "gemma-3-270m-GGUF"
    lmstudio.mkdir(parents=True)
    shutil.copyfile(gguf, lmstudio / "gemma-3-270m-Q4_K_M.gguf")
    return {"ollama": base / "ollama", "hf": base / "hf", "lmstudio": base / "lmstudio"}


def timed_import(r1: str, work: Path, tool: str, root: Path, trust: bool) -> tuple[float, dict]:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    env = {**os.environ, "R1_HOME": str(home), "R1_SOCKET": str(home / "r1.sock"), "R1_NO_AUTOSTART": "1"}
    daemon = subprocess.Popen([r1, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        while not (home / "r1.sock").exists():
            if daemon.poll() is not None:
                raise SystemExit("the r1 daemon did not start")
            time.sleep(0.02)
        started = time.perf_counter()
        done = subprocess.run([r1, "import", "--json", "--from", tool, "--dir", str(root), NAMES[tool],
                               *(["--trust"] if trust else [])], env=env, check=True, capture_output=True, text=True)
        return time.perf_counter() - started, json.loads(done.stdout)
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    gguf = gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models")
    work = Path(tempfile.mkdtemp(prefix="r1i-", dir="/tmp"))
    r1 = str(Path(sys.executable).with_name("r1"))
    try:
        roots = lay_out(gguf, work)
        gguf.read_bytes()  # warm the page cache, as for every run after the first
        copies = []
        for n in range(args.runs):
            started = time.perf_counter()
            subprocess.run(["cp", str(gguf), str(work / f"copy-{n}.gguf")], check=True)
            copies.append(time.perf_counter() - started)
        print(f"{gguf.stat().st_size / 1e6:.0f} MB GGUF, median of {args.runs} runs, warm page cache")
        print(f"{'':<22}{'checked':>10}{'--trust':>10}{'linked':>10}{'copied':>10}")
        for tool, root in roots.items():
            row = {}
            for trust in (False, True):
                runs = [timed_import(r1, work, tool, root, trust) for _ in range(args.runs)]
                row[trust] = statistics.median(seconds for seconds, _ in runs)
                summary = runs[-1][1]
            trusted = f"{row[True]:>9.2f}s" if tool != "lmstudio" else f"{'(no sha)':>10}"
            print(f"r1 import --from {tool:<9}{row[False]:>9.2f}s{trusted}"
                  f"{summary['bytes_linked'] / 1e6:>8.0f}MB{summary['bytes_copied'] / 1e6:>8.0f}MB")
        print(f"{'cp':<22}{statistics.median(copies):>9.2f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
