"""r1 beside llama.cpp's own server and llama.cpp's batch API, in one run: 1 client and 8 clients.

    python -m benchmarks.versus_llama_server --peer PYTHON_WITH_XLLAMACPP [--tokens 64] [--rounds 3]

Gemma 3 270M Q4_K_M, 2 threads, num_ctx 2048 per sequence, 64 greedy tokens a request, a raw prompt that
starts with a number of its own (never found in a cache). r1: a private daemon with R1_NUM_PARALLEL=8.
llama-server: the `xllamacpp` wheel in its own environment (benchmarks/llama_server.py), n_parallel 8.
The batch API (benchmarks/batch_api.py): no HTTP, one token per sequence per llama_decode, with the
extra buffer types r1's runner loaded with (on an AMX Xeon that crashes with them, both run without).
One client: decode tokens/s ((tokens - 1) from the first token to the last, as the client sees them).
Eight clients: aggregate tokens/s (all tokens over the time from the first request to the last answer).
Each round measures all three in turn, so that a busy moment on a shared machine hits each; the table
gives medians, and r1's lone client after the 8-client rounds against its first (a fresh model).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.batching import Server, concurrent, fresh_prompt, one, private_daemon, r1_commit, start_peer
from benchmarks.generate_speed import THREADS
from tests.support.tinymodels import gemma_gguf

ROOT = Path(__file__).resolve().parent

CTX, CLIENTS = 2048, 8


def batch_api(gemma: Path, tokens: int, extra_buffers: bool) -> dict[int, float]:
    """The batch API's rates for 1 and CLIENTS sequences, from a process of its own."""
    done = subprocess.run([sys.executable, str(ROOT / "batch_api.py"), str(gemma), str(THREADS), str(CTX),
                           str(tokens), "1" if extra_buffers else "0", "1", str(CLIENTS)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit(f"the batch API run failed ({done.returncode}): {done.stderr[-2000:]}")
    return {row["sequences"]: row["rate"] for row in map(json.loads, done.stdout.splitlines())}


def rates(server: Server, tokens: int) -> tuple[float, float]:
    """(one client's decode rate, CLIENTS clients' aggregate rate)."""
    lone = one(server, fresh_prompt(), tokens).decode_rate
    return lone, concurrent(server, tokens, CLIENTS)[0]


def extra_buffers_of(server: Server) -> bool:
    """Whether r1's runner loaded llama.cpp's extra buffer types (r1 ps says `CPU*` where it did not)."""
    sock = server.connect()
    sock.sendall(b"GET /api/ps HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    body = b"".join(iter(lambda: sock.recv(65536), b"")).split(b"\r\n\r\n", 1)[1]
    sock.close()
    return bool(json.loads(body)["models"][0].get("extra_buffers"))


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, metavar="PYTHON", help="a Python with xllamacpp installed")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    gemma = gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models")
    print(f"r1 at {r1_commit()}")
    print(f"Gemma 3 270M Q4_K_M, {THREADS} threads, num_ctx {CTX}, {args.tokens} greedy tokens a request, "
          f"{args.rounds} rounds\n", flush=True)
    measured: dict[str, list[tuple[float, float]]] = {"r1": [], "llama-server": [], "batch API": []}
    with private_daemon(gemma, CLIENTS, CTX) as r1, start_peer(args.peer, gemma) as peer:
        for server in (r1, peer):
            one(server, fresh_prompt(), 8)  # load and warm
        extra = extra_buffers_of(r1)
        fresh = statistics.median(one(r1, fresh_prompt(), args.tokens).decode_rate for _ in range(3))
        for n in range(args.rounds):
            for name, server in (("r1", r1), ("llama-server", peer)):
                measured[name].append(rates(server, args.tokens))
            limit = batch_api(gemma, args.tokens, extra)
            measured["batch API"].append((limit[1], limit[CLIENTS]))
            print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1][0]:.1f}/{v[-1][1]:.1f}" for k, v in measured.items()),
                  flush=True)
        after = statistics.median(one(r1, fresh_prompt(), args.tokens).decode_rate for _ in range(3))
    medians = {name: (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
               for name, rows in measured.items()}
    print(f"\n(llama.cpp extra buffer types: {'on' if extra else 'off, as r1 runs them on this CPU'})")
    print(f"{'tok/s':<14}{'1 client':>10}{f'{CLIENTS} clients':>12}")
    for name, (lone, many) in medians.items():
        print(f"{name:<14}{lone:>10.1f}{many:>12.1f}")
    r1_lone, r1_many = medians["r1"]
    for peer_name in ("llama-server", "batch API"):
        lone, many = medians[peer_name]
        print(f"r1 / {peer_name}: x{r1_lone / lone:.3f} with 1 client, x{r1_many / many:.3f} with {CLIENTS}")
    print(f"r1's lone client after the {CLIENTS}-client rounds: {after:.1f} tok/s against {fresh:.1f} on the fresh "
          f"model: x{after / fresh:.3f}")


if __name__ == "__main__":
    main()
