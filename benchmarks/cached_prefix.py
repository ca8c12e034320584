"""A long prompt seen before: its first token the first time, then from its slot, after an unload (`r1 stop`)
and after a daemon restart, when the KV cache tiers (R1_KV_CACHE_*) keep its cells.

    python -m benchmarks.cached_prefix [--tokens 4096] [--runs 3] [--quick] [--format mlx]

Gemma 3 270M Q4_K_M, n_threads as benchmarks/generate_speed.py, a private daemon (R1_NUM_PARALLEL=2, num_ctx
8192 on every request, temperature 0, a raw prompt of `--tokens` tokens of r1's own docs, one token asked).
Before each measured request the model is loaded and warmed by a short one, so every figure is the prompt's
cost alone. Wall time on a shared machine is noisy: each row is the median of `--runs` (each run a fresh
home, so "the first time" is always a miss). --quick: 1024 tokens, one run.

--format mlx: the MLX backend's tier instead, on tests/support/tinymlx.py's tiny random-weight llama (1024 positions:
896 tokens, 512 with --quick, R1_KV_CACHE_MIN_TOKENS 256; at some other lengths its random weights answer
with the end token at once, which has no first token to time). Its prompts cost little to evaluate, so its
times say more about the cache's own overhead than about what it saves; it adds the prompt tokens reused.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.batching import Server, one, r1_commit, r1_server, wait_for
from benchmarks.generate_speed import PROMPT, THREADS
from benchmarks.long_context import TEXTS, histories
from tests.support.tinymodels import gemma_gguf
from tests.support.unixhttp import unix_request

CTX = 8192
CASES = ("the first time", "seen before, in its slot", "after an unload (r1 stop)", "after a daemon restart")


@dataclasses.dataclass
class Model:
    path: Path  # what `r1 import` takes
    name: str
    ctx: int
    env: dict[str, str]  # beside the daemon's own


@contextlib.contextmanager
def daemon(home: Path, model: Model) -> Iterator[tuple[Server, dict[str, str]]]:
    """This environment's r1 serving from `home` (kept between daemons)."""
    r1 = str(Path(sys.executable).with_name("r1"))
    env = {**os.environ, "R1_HOME": str(home), "R1_SOCKET": str(home / "r1.sock"), "R1_NO_AUTOSTART": "1",
           "R1_NUM_PARALLEL": "2", **model.env}
    process = subprocess.Popen([r1, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(home / "r1.sock", process, "the r1 daemon")
        server = r1_server(str(home / "r1.sock"), model.ctx)
        body = server.body
        yield dataclasses.replace(server, body=lambda prompt, tokens: {**body(prompt, tokens), "model": model.name}), env
    finally:
        process.terminate()
        process.wait(30)


def reused(env: dict[str, str], model: Model, text: str) -> tuple[int, int]:
    """The prompt tokens a request for `text` takes from a cache (its final stats' prompt_cached), of how many."""
    status, body = unix_request(Path(env["R1_SOCKET"]), "POST", "/api/generate", {
        "model": model.name, "prompt": text, "raw": True, "stream": False,
        "options": {"temperature": 0, "num_predict": 1, "num_ctx": model.ctx}})
    assert status == 200, body
    cached = body.get("prompt_cached", 0)
    return cached, cached + body["prompt_eval_count"]


def run(model: Model, text: str) -> tuple[list[float], tuple[int, int]]:
    """Seconds to the first token in each case, with a fresh home; and the prompt tokens a third daemon takes
    from the disk tier for its first request of the text (the restart case, counted)."""
    home = Path(tempfile.mkdtemp(prefix="r1c-", dir="/tmp"))
    r1 = str(Path(sys.executable).with_name("r1"))
    try:
        with daemon(home, model) as (server, env):
            subprocess.run([r1, "import", str(model.path), "--name", model.name], env=env, check=True,
                           capture_output=True)
            one(server, PROMPT, 1)  # load and warm
            first = one(server, text, 1).ttft
            in_slot = one(server, text, 1).ttft
            subprocess.run([r1, "stop", model.name], env=env, check=True, capture_output=True)
            while model.name in subprocess.run([r1, "ps"], env=env, capture_output=True, text=True).stdout:
                time.sleep(0.1)
            one(server, PROMPT, 1)
            after_unload = one(server, text, 1).ttft
        with daemon(home, model) as (server, env):
            one(server, PROMPT, 1)
            after_restart = one(server, text, 1).ttft
        with daemon(home, model) as (_, env):
            cached = reused(env, model, text)
        return [first, in_slot, after_unload, after_restart], cached
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096, help="tokens in the long prompt")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1024 tokens (MLX: 512), one run")
    parser.add_argument("--format", choices=("gguf", "mlx"), default="gguf", help="which backend's tier")
    args = parser.parse_args()
    mlx = args.format == "mlx"
    if args.quick:
        args.tokens, args.runs = 512 if mlx else 1024, 1
    elif mlx:
        args.tokens = min(args.tokens, 896)
    if mlx:
        model = Model(tiny_mlx(Path(tempfile.gettempdir()) / "r1-test-models"), "tiny-mlx", 1024,
                      {"R1_KV_CACHE_MIN_TOKENS": "256"})
        text = mlx_text(model.path, args.tokens)
        about = "tests/support/tinymlx.py's tiny llama (MLX), num_ctx 1024"
    else:
        model = Model(gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models"), "gemma", CTX, {})
        (text,) = histories(model.path, 1, args.tokens)
        about = f"Gemma 3 270M Q4_K_M, n_threads={THREADS}, num_ctx {CTX}"
    print(f"r1 at {r1_commit()}")
    print(f"{about}, a prompt of {args.tokens} tokens, median of {args.runs}\n", flush=True)
    runs = [run(model, text) for _ in range(args.runs)]
    medians = [statistics.median(r[0][i] for r in runs) for i in range(len(CASES))]
    print(f"{'first token of the long prompt':<36}{'ms':>10}{'x faster':>10}")
    for case, seconds in zip(CASES, medians):
        print(f"{case:<36}{seconds * 1000:>10.0f}{medians[0] / seconds:>10.1f}")
    cached, total = min(r[1] for r in runs)
    print(f"\nprompt tokens taken from the disk by a restarted daemon: {cached} of {total}")


def tiny_mlx(folder: Path) -> Path:
    from tests.support.tinymlx import write_mlx_model

    return write_mlx_model(folder / "tiny-mlx")  # the same bytes each time: rewritten in a moment


def mlx_text(folder: Path, length: int) -> str:
    """A text of `length` of the tiny model's tokens: r1's own docs."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    corpus = "\n\n".join(path.read_text() for path in TEXTS)
    return tokenizer.decode(tokenizer.encode(corpus, add_special_tokens=False).ids[:length])


if __name__ == "__main__":
    main()
