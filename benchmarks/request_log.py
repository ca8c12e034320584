"""The request log's cost: decode speed of streamed generations, and the time of small requests,
with the log on and off, in the same run.

    python -m benchmarks.request_log [--runs 6] [--tokens 128] [--small 300]

Two daemons on the same machine, one with R1_LOG_REQUESTS=0, each with Gemma 3 270M Q4_K_M
(generate_speed.py's request: raw prompt, temperature 0, n_threads 2, num_ctx 2048). The runs
alternate between them, so a load that comes and goes on the machine falls on both. The log acts
once per request (an append to a list; a batch written every 0.5 s on the store's writer thread),
never per token: the decode rate should not move, and a small request (GET /api/version, whose
work is nearly all HTTP) shows the per-request cost at its largest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.generate_speed import through_r1
from tests.support.tinymodels import gemma_gguf


def small_requests(sock_path: str, count: int) -> float:
    """Mean seconds per GET /api/version, one connection each (as the CLI makes them)."""
    start = time.perf_counter()
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(sock_path)
        sock.sendall(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass
        sock.close()
    return (time.perf_counter() - start) / count


def start(work: Path, name: str, gemma: Path, **env: str) -> tuple[subprocess.Popen, str]:
    r1 = str(Path(sys.executable).with_name("r1"))
    sock = work / f"{name}.sock"
    full = {**os.environ, "R1_HOME": str(work / name), "R1_SOCKET": str(sock), "R1_NO_AUTOSTART": "1", **env}
    daemon = subprocess.Popen([r1, "serve"], env=full, stderr=subprocess.DEVNULL)
    while not sock.exists():
        time.sleep(0.05)
    subprocess.run([r1, "import", str(gemma), "--name", "gemma"], env=full, check=True, capture_output=True)
    return daemon, str(sock)


WRITE_PERIOD = 1.0  # seconds; the request log writes its queue every 0.5 s


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--small", type=int, default=300, help="small requests per run")
    args = parser.parse_args()
    gemma = gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models")
    work = Path(tempfile.mkdtemp(prefix="r1l-", dir="/tmp"))
    daemons = {}
    try:
        daemons["log on"] = start(work, "on", gemma)
        daemons["log off"] = start(work, "off", gemma, R1_LOG_REQUESTS="0")
        for _, sock in daemons.values():
            through_r1(sock, 8)  # load and warm
        rates: dict[str, list[float]] = {name: [] for name in daemons}
        smalls: dict[str, list[float]] = {name: [] for name in daemons}
        for run in range(args.runs):
            order = list(daemons) if run % 2 == 0 else list(reversed(daemons))
            for name in order:
                rates[name].append(through_r1(daemons[name][1], args.tokens)[1])
                smalls[name].append(small_requests(daemons[name][1], args.small))
                # The log writes the small requests' rows within 0.5 s: not during the next decode measured.
                time.sleep(WRITE_PERIOD)
    finally:
        for daemon, _ in daemons.values():
            daemon.terminate()
            daemon.wait()
        shutil.rmtree(work, ignore_errors=True)

    print(f"Gemma 3 270M Q4_K_M, {args.tokens} tokens streamed, {args.small} GET /api/version, "
          f"median of {args.runs} alternating runs\n")
    print(f"{'':<10}{'decode tok/s':>14}{'small request ms':>18}")
    for name in daemons:
        print(f"{name:<10}{statistics.median(rates[name]):>14.1f}{statistics.median(smalls[name]) * 1000:>18.3f}")
    on, off = statistics.median(rates["log on"]), statistics.median(rates["log off"])
    small_on, small_off = statistics.median(smalls["log on"]), statistics.median(smalls["log off"])
    print(f"\ndecode rate with the log: {100 * (on - off) / off:+.2f}% (aim: within 1%)")
    print(f"a small request with the log: {(small_on - small_off) * 1e6:+.0f} us ({100 * (small_on - small_off) / small_off:+.1f}%)")


if __name__ == "__main__":
    main()
