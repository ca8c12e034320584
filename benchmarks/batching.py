"""Several clients on one model: aggregate decode throughput with 1, 2, 4 and 8 concurrent clients
through r1, single-client decode against llama-cpp-python in-process, and the first token of a
request that arrives while 7 others stream.

    python benchmarks/batching.py [--tokens 128] [--runs 3]

Gemma 3 270M Q4_K_M, n_threads=2, num_ctx 2048 per request, temperature 0, a raw prompt,
a private daemon with R1_NUM_PARALLEL=8 (so that 8 clients are let in at once; a runner that
decodes one sequence at a time serves them in turn). Every request starts with a number of its
own, so no prompt is ever found in a cache. Aggregate tokens/s is the tokens all clients got
(their eval_count) over the time from the first request sent to the last answer done. Decode
rate is (tokens - 1) / (last token - first token), seen by the caller; the single-client
comparison alternates r1 and `Llama.generate` in-process on the same prompt, `--runs` times,
and takes medians. The loaded request: 7 clients are sent, and once 7 tokens have come back
among them (one each where they are decoded together, the first one's first 7 where they take
turns), an 8th is sent; its time to first token is set against the same-length request on the
idle model, measured first. Works on any r1 commit, with or without batching runners, so the
table can be compared before and after.
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))
sys.path.insert(0, str(ROOT))

from generate_speed import PROMPT, THREADS, token_loop  # noqa: E402
from tinymodels import gemma_gguf  # noqa: E402

CTX = 2048
CLIENTS = (1, 2, 4, 8)
_numbers = itertools.count(100)  # three digits each: every prompt the same length, none cached


def fresh_prompt() -> str:
    return f"{next(_numbers)}. {PROMPT}"


@dataclass
class Answer:
    """One streamed /api/generate, seen by its client."""

    sent: float = 0.0
    stamps: list[float] = field(default_factory=list)  # when each text line arrived
    final: dict = field(default_factory=dict)

    @property
    def ttft(self) -> float:
        return self.stamps[0] - self.sent

    @property
    def decode_rate(self) -> float:
        return (len(self.stamps) - 1) / (self.stamps[-1] - self.stamps[0])


def generate(sock_path: str, prompt: str, tokens: int, answer: Answer, arrived: threading.Semaphore | None = None) -> None:
    """Stream one answer into `answer`; `arrived` is released once per text line."""
    body = json.dumps({"model": "gemma", "prompt": prompt, "raw": True, "options": {
        "temperature": 0, "num_predict": tokens, "num_thread": THREADS, "num_ctx": CTX}}).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sock_path)
    answer.sent = time.perf_counter()
    sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    reader = sock.makefile("rb")
    lines = []  # what came back other than text, to say what went wrong
    while line := reader.readline():
        if b'"done": false' in line:  # no parsing per token: the client's own cost is not r1's
            answer.stamps.append(time.perf_counter())
            if arrived is not None:
                arrived.release()
        elif b'"done": true' in line:
            answer.final = json.loads(line)
        else:
            lines.append(line)
    sock.close()
    if not answer.final:
        raise RuntimeError(f"no answer for {prompt!r}: {b''.join(lines).decode(errors='replace')}")


def start(sock_path: str, tokens: int, count: int, arrived: threading.Semaphore | None = None
          ) -> tuple[list[Answer], list[threading.Thread]]:
    answers = [Answer() for _ in range(count)]
    threads = [threading.Thread(target=generate, args=(sock_path, fresh_prompt(), tokens, a, arrived)) for a in answers]
    for thread in threads:
        thread.start()
    return answers, threads


def concurrent(sock_path: str, tokens: int, count: int) -> tuple[float, int, float]:
    """(aggregate tokens/s, tokens, seconds) for `count` clients sent together."""
    answers, threads = start(sock_path, tokens, count)
    for thread in threads:
        thread.join()
    ended = time.perf_counter()
    total = sum(a.final["eval_count"] for a in answers)
    seconds = ended - min(a.sent for a in answers)
    return total / seconds, total, seconds


def one(sock_path: str, prompt: str, tokens: int) -> Answer:
    answer = Answer()
    generate(sock_path, prompt, tokens, answer)
    return answer


def loaded_first_token(sock_path: str, tokens: int, others: int = 7) -> float:
    """Seconds to the first token of a request sent once `others` requests are streaming."""
    arrived = threading.Semaphore(0)
    _, threads = start(sock_path, tokens, others, arrived)
    for _ in range(others):
        if not arrived.acquire(timeout=600):
            raise SystemExit("the loaded requests sent no tokens for 10 minutes")
    late = one(sock_path, fresh_prompt(), tokens)
    for thread in threads:
        thread.join()
    return late.ttft


def r1_commit() -> str:
    """The commit of the r1 this Python runs (the daemon is this environment's `r1`), for before and after."""
    found = importlib.util.find_spec("r1.daemon")
    where = Path(found.origin).parent if found and found.origin else ROOT
    done = subprocess.run(["git", "-C", str(where), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return f"{done.stdout.strip()[:90] or 'unknown commit'} ({where})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3, help="alternating single-client decode runs")
    args = parser.parse_args()
    from llama_cpp import Llama

    gemma = gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models")
    work = Path(tempfile.mkdtemp(prefix="r1b-", dir="/tmp"))
    r1 = str(Path(sys.executable).with_name("r1"))
    env = {**os.environ, "R1_HOME": str(work / "home"), "R1_SOCKET": str(work / "r1.sock"), "R1_NO_AUTOSTART": "1",
           "R1_NUM_PARALLEL": str(max(CLIENTS))}
    daemon = subprocess.Popen([r1, "serve"], env=env, stderr=subprocess.DEVNULL)
    sock = str(work / "r1.sock")
    # Each line is printed as soon as it is measured: a slow machine still shows what it got.
    print(f"r1 at {r1_commit()}")
    print(f"Gemma 3 270M Q4_K_M, n_threads={THREADS}, num_ctx {CTX}, temperature 0, {args.tokens} tokens per request, "
          f"R1_NUM_PARALLEL={max(CLIENTS)}\n", flush=True)
    try:
        deadline = time.monotonic() + 60
        while not (work / "r1.sock").exists():
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit("the r1 daemon did not start")
            time.sleep(0.05)
        subprocess.run([r1, "import", str(gemma), "--name", "gemma"], env=env, check=True, capture_output=True)
        one(sock, fresh_prompt(), 8)  # load and warm the runner
        idle_ttft = one(sock, fresh_prompt(), args.tokens).ttft
        loaded_ttft = loaded_first_token(sock, args.tokens)
        print(f"first token of a request sent while 7 others stream: {loaded_ttft * 1000:.0f} ms; "
              f"on the idle model: {idle_ttft * 1000:.0f} ms (x{loaded_ttft / idle_ttft:.1f})\n", flush=True)
        print(f"{'clients':>8}{'aggregate tok/s':>18}{'tokens':>9}{'seconds':>10}", flush=True)
        rates = {}
        for count in CLIENTS:
            rates[count], total, seconds = concurrent(sock, args.tokens, count)
            print(f"{count:>8}{rates[count]:>18.1f}{total:>9}{seconds:>10.2f}", flush=True)
        print(f"\n{max(CLIENTS)} clients / 1 client: x{rates[max(CLIENTS)] / rates[1]:.2f}", flush=True)
        llm = Llama(str(gemma), n_ctx=CTX, n_threads=THREADS, verbose=False)
        token_loop(llm, 8)  # warm
        r1_rates, own_rates = [], []
        for _ in range(args.runs):  # alternating, so a busy moment on a shared machine hits both
            r1_rates.append(one(sock, PROMPT, args.tokens).decode_rate)
            own_rates.append(token_loop(llm, args.tokens)[1])
        r1_rate, own_rate = statistics.median(r1_rates), statistics.median(own_rates)
        print(f"single-client decode: r1 {r1_rate:.1f} tok/s, llama-cpp-python in-process {own_rate:.1f} tok/s "
              f"(median of {args.runs}): x{r1_rate / own_rate:.3f}")
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
