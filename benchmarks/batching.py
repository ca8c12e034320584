"""Several clients on one model: aggregate decode throughput with 1, 2, 4 and 8 concurrent clients
through r1, single-client decode against llama-cpp-python in-process, and the first token of a
request that arrives while 7 others stream; optionally the same load on llama.cpp's C++ server.

    python -m benchmarks.batching [--tokens 128] [--runs 3] [--peer PYTHON_WITH_XLLAMACPP]

Gemma 3 270M Q4_K_M, n_threads=2, num_ctx 2048 per request, temperature 0, a raw prompt,
a private daemon with R1_NUM_PARALLEL=8 (so that 8 clients are let in at once; a runner that
decodes one sequence at a time serves them in turn). Every request starts with a number of its
own, so no prompt is ever found in a cache. Aggregate tokens/s is the tokens all clients got
(the server's count) over the time from the first request sent to the last answer done. Decode
rate is (tokens - 1) / (last token - first token), seen by the caller; the single-client
comparison alternates r1 and `Llama.generate` in-process, `--runs` times, and takes medians:
first on the fresh model, again after the 8 clients (whose prompts the slots still hold).
The loaded request: 7 clients are sent, and once 7 tokens have come back among them (one each
where they are decoded together, the first one's first 7 where they take turns), an 8th is
sent; its time to first token is set against the same-length request on the idle model. Works
on any r1 commit, with or without batching runners, so the table can be compared before and
after. `--peer` starts benchmarks/llama_server.py with that Python (`pip install xllamacpp`
there) and measures the same on llama.cpp's server with n_parallel 8, in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.generate_speed import PROMPT, THREADS, token_loop
from tests.support.tinymodels import gemma_gguf

ROOT = Path(__file__).resolve().parent

CTX = 2048
CLIENTS = (1, 2, 4, 8)
_numbers = itertools.count(100)  # three digits each: every prompt the same length, none cached


def fresh_prompt() -> str:
    return f"{next(_numbers)}. {PROMPT}"


@dataclass
class Answer:
    """One streamed answer, seen by its client."""

    sent: float = 0.0
    stamps: list[float] = field(default_factory=list)  # when each token's line arrived
    tokens: int = 0  # the server's own count, from its last line

    @property
    def ttft(self) -> float:
        return self.stamps[0] - self.sent

    @property
    def decode_rate(self) -> float:
        return (len(self.stamps) - 1) / (self.stamps[-1] - self.stamps[0])


@dataclass(frozen=True)
class Server:
    """Where to send a streamed completion, and how its lines say token or end (no JSON parsing per token:
    the client's own cost is not the server's)."""

    connect: Callable[[], socket.socket]
    path: str
    body: Callable[[str, int], dict[str, Any]]
    token_mark: bytes
    end_mark: bytes
    count_field: str


def r1_server(sock_path: str, ctx: int = CTX) -> Server:
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(sock_path)
        return sock

    return Server(connect, "/api/generate", lambda prompt, tokens: {
        "model": "gemma", "prompt": prompt, "raw": True,
        "options": {"temperature": 0, "num_predict": tokens, "num_thread": THREADS, "num_ctx": ctx}},
        b'"done": false', b'"done": true', "eval_count")


def llama_server(port: int) -> Server:
    """llama.cpp's server: /completion, streamed as server-sent events."""
    return Server(lambda: socket.create_connection(("127.0.0.1", port)), "/completion", lambda prompt, tokens: {
        "prompt": prompt, "n_predict": tokens, "temperature": 0, "stream": True},
        b'"stop":false', b'"stop":true', "tokens_predicted")


def generate(server: Server, prompt: str, tokens: int, answer: Answer, arrived: threading.Semaphore | None = None) -> None:
    """Stream one answer into `answer`; `arrived` is released once per token."""
    body = json.dumps(server.body(prompt, tokens)).encode()
    sock = server.connect()
    answer.sent = time.perf_counter()
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % (server.path.encode(), len(body)) + body)
    reader = sock.makefile("rb")
    lines = []  # what came back other than tokens, to say what went wrong
    while line := reader.readline():
        if server.token_mark in line:
            answer.stamps.append(time.perf_counter())
            if arrived is not None:
                arrived.release()
        elif server.end_mark in line:
            answer.tokens = json.loads(line.removeprefix(b"data: "))[server.count_field]
        else:
            lines.append(line)
    sock.close()
    if not answer.tokens:
        raise RuntimeError(f"no answer for {prompt!r}: {b''.join(lines).decode(errors='replace')[-2000:]}")


def start(server: Server, tokens: int, count: int, arrived: threading.Semaphore | None = None
          ) -> tuple[list[Answer], list[threading.Thread]]:
    answers = [Answer() for _ in range(count)]
    threads = [threading.Thread(target=generate, args=(server, fresh_prompt(), tokens, a, arrived)) for a in answers]
    for thread in threads:
        thread.start()
    return answers, threads


def concurrent(server: Server, tokens: int, count: int) -> tuple[float, int, float]:
    """(aggregate tokens/s, tokens, seconds) for `count` clients sent together."""
    answers, threads = start(server, tokens, count)
    for thread in threads:
        thread.join()
    ended = time.perf_counter()
    total = sum(a.tokens for a in answers)
    seconds = ended - min(a.sent for a in answers)
    return total / seconds, total, seconds


def one(server: Server, prompt: str, tokens: int) -> Answer:
    answer = Answer()
    generate(server, prompt, tokens, answer)
    return answer


def loaded_first_token(server: Server, tokens: int, others: int = 7) -> float:
    """Seconds to the first token of a request sent once `others` tokens came back among `others` requests."""
    arrived = threading.Semaphore(0)
    _, threads = start(server, tokens, others, arrived)
    for _ in range(others):
        if not arrived.acquire(timeout=600):
            raise SystemExit("the loaded requests sent no tokens for 10 minutes")
    late = one(server, fresh_prompt(), tokens)
    for thread in threads:
        thread.join()
    return late.ttft


def single_client(server: Server, llm: Any, tokens: int, runs: int) -> tuple[float, float]:
    """Median decode tokens/s of one client through the server and of llama-cpp-python in-process, alternating
    (so that a busy moment on a shared machine hits both)."""
    served, own = [], []
    for _ in range(runs):
        served.append(one(server, fresh_prompt(), tokens).decode_rate)
        own.append(token_loop(llm, tokens)[1])
    return statistics.median(served), statistics.median(own)


def table(server: Server, tokens: int) -> dict[int, float]:
    print(f"{'clients':>8}{'aggregate tok/s':>18}{'tokens':>9}{'seconds':>10}", flush=True)
    rates = {}
    for count in CLIENTS:
        rates[count], total, seconds = concurrent(server, tokens, count)
        print(f"{count:>8}{rates[count]:>18.1f}{total:>9}{seconds:>10.2f}", flush=True)
    print(f"{max(CLIENTS)} clients / 1 client: x{rates[max(CLIENTS)] / rates[1]:.2f}\n", flush=True)
    return rates


def wait_for(path: Path, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.05)


@contextlib.contextmanager
def start_peer(python: str, gemma: Path, slots: int = max(CLIENTS), ctx: int = CTX) -> Iterator[Server]:
    """llama.cpp's C++ server on `gemma`, started with `python` (an environment with xllamacpp)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([python, str(ROOT / "llama_server.py"), str(gemma), str(port), str(slots),
                                str(THREADS), str(ctx)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        if not process.stdout.readline().startswith("ready"):
            raise SystemExit("llama.cpp's server did not start: is xllamacpp installed for " + python + "?")
        yield llama_server(port)
    finally:
        process.kill()
        process.wait()


def peer(python: str, gemma: Path, tokens: int) -> None:
    """The same load on llama.cpp's C++ server."""
    with start_peer(python, gemma) as server:
        print(f"llama.cpp's C++ server (xllamacpp), n_parallel={max(CLIENTS)}, the same load:", flush=True)
        one(server, fresh_prompt(), 8)
        idle = one(server, fresh_prompt(), tokens).ttft
        loaded = loaded_first_token(server, tokens)
        print(f"first token of a request sent while 7 others stream: {loaded * 1000:.0f} ms; "
              f"on the idle server: {idle * 1000:.0f} ms (x{loaded / idle:.1f})", flush=True)
        table(server, tokens)


@contextlib.contextmanager
def private_daemon(gemma: Path, slots: int, ctx: int) -> Iterator[Server]:
    """A daemon of this environment's r1 in a temporary home, with `gemma` stored as "gemma"."""
    work = Path(tempfile.mkdtemp(prefix="r1b-", dir="/tmp"))
    r1 = str(Path(sys.executable).with_name("r1"))
    env = {**os.environ, "R1_HOME": str(work / "home"), "R1_SOCKET": str(work / "r1.sock"), "R1_NO_AUTOSTART": "1",
           "R1_NUM_PARALLEL": str(slots)}
    daemon = subprocess.Popen([r1, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(work / "r1.sock", daemon, "the r1 daemon")
        subprocess.run([r1, "import", str(gemma), "--name", "gemma"], env=env, check=True, capture_output=True)
        yield r1_server(str(work / "r1.sock"), ctx)
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(work, ignore_errors=True)


def r1_commit() -> str:
    """The commit of the r1 this Python runs (the daemon is this environment's `r1`), for before and after."""
    found = importlib.util.find_spec("r1.daemon")
    where = Path(found.origin).parent if found and found.origin else ROOT
    done = subprocess.run(["git", "-C", str(where), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return f"{done.stdout.strip()[:90] or 'unknown commit'} ({where})"


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3, help="alternating single-client decode runs")
    parser.add_argument("--peer", metavar="PYTHON", help="a Python with xllamacpp: run the same load on llama.cpp's server")
    args = parser.parse_args()
    from llama_cpp import Llama

    gemma = gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models")
    # Each line is printed as soon as it is measured: a slow machine still shows what it got.
    print(f"r1 at {r1_commit()}")
    print(f"Gemma 3 270M Q4_K_M, n_threads={THREADS}, num_ctx {CTX}, temperature 0, {args.tokens} tokens per request, "
          f"R1_NUM_PARALLEL={max(CLIENTS)}\n", flush=True)
    with private_daemon(gemma, max(CLIENTS), CTX) as server:
        one(server, fresh_prompt(), 8)  # load and warm the runner
        llm = Llama(str(gemma), n_ctx=CTX, n_threads=THREADS, verbose=False)
        token_loop(llm, 8)  # warm
        mine, own = single_client(server, llm, args.tokens, args.runs)
        print(f"single-client decode: r1 {mine:.1f} tok/s, llama-cpp-python in-process {own:.1f} tok/s "
              f"(median of {args.runs}): x{mine / own:.3f}", flush=True)
        idle_ttft = one(server, fresh_prompt(), args.tokens).ttft
        loaded_ttft = loaded_first_token(server, args.tokens)
        print(f"first token of a request sent while 7 others stream: {loaded_ttft * 1000:.0f} ms; "
              f"on the idle model: {idle_ttft * 1000:.0f} ms (x{loaded_ttft / idle_ttft:.1f})\n", flush=True)
        table(server, args.tokens)
        # Now every slot keeps the cells of the prompts it served, which one sequence's attention still spans.
        mine, own = single_client(server, llm, args.tokens, args.runs)
        print(f"single-client decode after the 8 clients: r1 {mine:.1f} tok/s, in-process {own:.1f} tok/s: "
              f"x{mine / own:.3f}\n", flush=True)
    if args.peer:
        peer(args.peer, gemma, args.tokens)


if __name__ == "__main__":
    main()
