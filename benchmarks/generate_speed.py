"""Decode speed and warm time to first token: r1 (HTTP over the socket, runner process) beside
llama-cpp-python in-process, on the same model and settings.

    python -m benchmarks.generate_speed [--runs 5] [--tokens 256]

Gemma 3 270M Q4_K_M, n_threads=2, num_ctx 2048, temperature 0, a raw prompt. Both sides are
warm (the model loaded, one generation done) before timing. r1 is a streamed POST /api/generate
read by a plain socket client. Decode rate is
(tokens - 1) / (last token - first token), seen by the caller; time to first token is from
sending the request to the first token in hand; r1's own share of it is that time less the
prompt evaluation its runner reports. The runs alternate between the contenders.
Two in-process baselines: `create_completion` (what most scripts call) and a bare
`Llama.generate` loop (the least work per token the library allows).
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
from pathlib import Path

from tests.support.tinymodels import gemma_gguf

PROMPT = "Once upon a time, in a small village by the sea,"
THREADS, CTX = 2, 2048


def timings(start: float, stamps: list[float]) -> tuple[float, float, int]:
    """(seconds to first token, decode tokens/s, tokens)."""
    return stamps[0] - start, (len(stamps) - 1) / (stamps[-1] - stamps[0]), len(stamps)


def completion(llm, tokens: int) -> tuple[float, float, int]:
    """llama-cpp-python's streamed create_completion, as most scripts call it."""
    start = time.perf_counter()
    stamps = []
    for chunk in llm.create_completion(PROMPT, max_tokens=tokens, temperature=0, top_k=40, top_p=0.9, min_p=0,
                                       repeat_penalty=1.1, stream=True):
        if chunk["choices"][0]["text"]:
            stamps.append(time.perf_counter())
    return timings(start, stamps)


def token_loop(llm, tokens: int) -> tuple[float, float, int]:
    """The leanest in-process path: Llama.generate, detokenizing each token (what r1's runner does)."""
    start = time.perf_counter()
    stamps = []
    prompt = llm.tokenize(PROMPT.encode())
    for token in llm.generate(prompt, temp=0, top_k=40, top_p=0.9, min_p=0, repeat_penalty=1.1):
        llm.detokenize([token])
        stamps.append(time.perf_counter())
        if len(stamps) == tokens:
            break
    return timings(start, stamps)


def through_r1(sock_path: str, tokens: int) -> tuple[float, float, int, float]:
    """As the others, plus r1's own share of the first token: the wait the runner did not spend on the prompt."""
    body = json.dumps({"model": "gemma", "prompt": PROMPT, "raw": True,
                       "options": {"temperature": 0, "num_predict": tokens, "num_thread": THREADS, "num_ctx": CTX}}).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sock_path)
    start = time.perf_counter()
    sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    reader = sock.makefile("rb")
    stamps = []
    final = {}
    while line := reader.readline():
        if b'"done": false' in line:  # no parsing per token: the client's own cost is not r1's
            stamps.append(time.perf_counter())
        elif b'"done": true' in line:
            final = json.loads(line)
    sock.close()
    ttft, rate, count = timings(start, stamps)
    return ttft, rate, count, ttft - final["prompt_eval_duration"] / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()
    from llama_cpp import Llama

    gemma = gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models")
    work = Path(tempfile.mkdtemp(prefix="r1g-", dir="/tmp"))
    r1 = str(Path(sys.executable).with_name("r1"))
    env = {**os.environ, "R1_HOME": str(work / "home"), "R1_SOCKET": str(work / "r1.sock"), "R1_NO_AUTOSTART": "1"}
    daemon = subprocess.Popen([r1, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        while not (work / "r1.sock").exists():
            time.sleep(0.05)
        subprocess.run([r1, "import", str(gemma), "--name", "gemma"], env=env, check=True, capture_output=True)
        llm = Llama(str(gemma), n_ctx=CTX, n_threads=THREADS, verbose=False)
        sock = str(work / "r1.sock")
        contenders = {
            "in-process create_completion": lambda: completion(llm, args.tokens),
            "in-process Llama.generate": lambda: token_loop(llm, args.tokens),
            "r1 over the socket": lambda: through_r1(sock, args.tokens),
        }
        completion(llm, 8)  # warm every path
        through_r1(sock, 8)
        results: dict[str, list[tuple[float, ...]]] = {name: [] for name in contenders}
        for _ in range(args.runs):
            for name, run in contenders.items():
                results[name].append(run())
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(work, ignore_errors=True)

    print(f"Gemma 3 270M Q4_K_M, n_threads={THREADS}, num_ctx {CTX}, temperature 0, {args.tokens} tokens, "
          f"median of {args.runs} runs\n")
    print(f"{'':<30}{'decode tok/s':>14}{'first token ms':>16}{'tokens':>8}")
    medians = {}
    for name, runs in results.items():
        ttft = statistics.median(r[0] for r in runs) * 1000
        rate = statistics.median(r[1] for r in runs)
        medians[name] = (ttft, rate)
        print(f"{name:<30}{rate:>14.1f}{ttft:>16.1f}{runs[0][2]:>8}")
    r1_ttft, r1_rate = medians.pop("r1 over the socket")
    own = statistics.median(r[3] for r in results["r1 over the socket"]) * 1000
    print(f"\nr1's own share of its first token (HTTP, daemon, runner frames; not the prompt's evaluation): {own:.1f} ms")
    for name, (ttft, rate) in medians.items():
        print(f"r1 / {name}: decode rate x{r1_rate / rate:.3f}, warm first-token overhead {r1_ttft - ttft:+.1f} ms")


if __name__ == "__main__":
    main()
