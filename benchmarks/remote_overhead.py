"""What r1 adds in front of a remote engine: llama-cpp-python's own OpenAI-compatible server on
loopback, asked directly and through r1 (a remote model), in the same run.

    python -m benchmarks.remote_overhead [--runs 7] [--tokens 128]

SmolLM2 135M Instruct (the bundled model), n_threads 2, temperature 0, a streamed chat completion
of `--tokens` tokens, read by a plain socket client on both sides: straight to the server's
/v1/chat/completions, and to r1's /v1/chat/completions on its Unix socket, which forwards it. Time
to first token is from sending the request to the first content chunk in hand; decode rate is
(chunks - 1) / (last chunk - first chunk). Runs alternate and medians are reported: r1's added
time to first token in milliseconds, and its decode rate over the direct one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.llamaserver import llama_server
from tests.support.tinymodels import smollm2_gguf

PROMPT = "Tell me a long story about a lighthouse keeper."


def stream(connect: Callable[[], socket.socket], tokens: int, model: str) -> tuple[float, float, int]:
    """(seconds to the first content chunk, chunks per second after it, chunks) of one streamed chat completion."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
                       "max_tokens": tokens, "temperature": 0}).encode()
    sock = connect()
    sent = time.perf_counter()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    stamps = []
    for line in sock.makefile("rb"):
        if line.startswith(b"data: {"):  # parsed on both sides alike: the same client cost for each
            choices = json.loads(line[6:]).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                stamps.append(time.perf_counter())
    sock.close()
    if len(stamps) < 2:
        raise SystemExit(f"{model}: fewer than two content chunks came back")
    return stamps[0] - sent, (len(stamps) - 1) / (stamps[-1] - stamps[0]), len(stamps)


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="r1r-", dir="/tmp"))
    r1 = str(Path(sys.executable).with_name("r1"))
    env = {**os.environ, "R1_HOME": str(work / "home"), "R1_SOCKET": str(work / "r1.sock"), "R1_NO_AUTOSTART": "1"}
    with llama_server(smollm2_gguf(), alias="smollm2") as url:
        daemon = subprocess.Popen([r1, "serve"], env=env, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not (work / "r1.sock").exists():
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise SystemExit("the r1 daemon did not start")
                time.sleep(0.05)
            for command in (["remote", "add", "local", url], ["create", "remote-smollm2", "--from", "local:smollm2"]):
                subprocess.run([r1, *command], env=env, check=True, capture_output=True)
            host, port = url.removeprefix("http://").split(":")

            def direct() -> socket.socket:
                return socket.create_connection((host, int(port)))

            def through_r1() -> socket.socket:
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(str(work / "r1.sock"))
                return sock

            stream(direct, 8, "smollm2")  # warm both paths
            stream(through_r1, 8, "remote-smollm2")
            results: dict[str, list[tuple[float, float, int]]] = {"direct": [], "r1": []}
            for _ in range(args.runs):
                results["direct"].append(stream(direct, args.tokens, "smollm2"))
                results["r1"].append(stream(through_r1, args.tokens, "remote-smollm2"))
        finally:
            daemon.terminate()
            daemon.wait()
            shutil.rmtree(work, ignore_errors=True)
    ttft = {name: statistics.median(r[0] for r in runs) for name, runs in results.items()}
    rate = {name: statistics.median(r[1] for r in runs) for name, runs in results.items()}
    print(f"SmolLM2 135M on llama-cpp-python's server, {args.tokens} tokens, median of {args.runs} alternating runs")
    print(f"{'':>8}{'first token':>14}{'chunks/s':>10}")
    for name in ("direct", "r1"):
        print(f"{name:>8}{ttft[name] * 1000:>11.1f} ms{rate[name]:>10.1f}")
    print(f"r1 adds {(ttft['r1'] - ttft['direct']) * 1000:.1f} ms to the first token; "
          f"decode through r1 / direct: x{rate['r1'] / rate['direct']:.3f}")


if __name__ == "__main__":
    main()
