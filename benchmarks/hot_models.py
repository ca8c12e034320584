"""Hot models: r1's memory estimate against the measured runner, and 20 requests alternating
between two models with r1 (both kept loaded) beside llama-cpp-python's own server.

    pip install -e '.[bench]'      # llama-cpp-python[server], for the side-by-side
    python -m benchmarks.hot_models

The two models are Gemma 3 270M (Q4_K_M) and SmolLM2 135M Instruct (Q4_1), n_ctx 2048,
2 threads, 16-token completions at temperature 0, a raw prompt. `python -m llama_cpp.server
--config_file` serves both names but holds one model at a time, so each switch reloads.
Both servers get one warm-up request per model first; then the 20 requests are timed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.tinymodels import gemma_gguf, smollm2_gguf

PROMPT = "The three primary colors are"
REQUESTS = 20


def unix_post(sock: Path, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
    payload = json.dumps(body).encode() if body is not None else b""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
              + payload)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body_bytes = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], data[:300]
    return json.loads(body_bytes)


def r1_generate(sock: Path, model: str, num_ctx: int = 2048, tokens: int = 16) -> dict[str, Any]:
    return unix_post(sock, "/api/generate", {"model": model, "prompt": PROMPT, "raw": True, "stream": False,
                                              "options": {"num_ctx": num_ctx, "num_thread": 2, "temperature": 0,
                                                          "num_predict": tokens}})


def memory_table(sock: Path) -> None:
    print("Memory of Gemma 3 270M Q4_K_M in its runner (RSS after a request) against r1's estimate\n")
    print(f"{'num_ctx':>8}{'estimate MB':>13}{'measured MB':>13}{'estimate/measured':>19}")
    for ctx in (2048, 8192):
        r1_generate(sock, "gemma", num_ctx=ctx, tokens=4)
        time.sleep(0.6)  # the scheduler re-measures a runner 0.2 s after each request
        model = next(m for m in unix_post(sock, "/api/ps", method="GET")["models"] if m["context_length"] == ctx)
        print(f"{ctx:>8}{model['estimate'] / 1e6:>13.0f}{model['size'] / 1e6:>13.0f}{model['estimate'] / model['size']:>19.3f}")
    unix_post(sock, "/api/generate", {"model": "gemma", "keep_alive": 0, "stream": False})  # unload both before timing


def alternate_r1(sock: Path) -> float:
    for model in ("gemma", "smollm2"):
        r1_generate(sock, model)
    start = time.perf_counter()
    for n in range(REQUESTS):
        r1_generate(sock, ("gemma", "smollm2")[n % 2])
    return time.perf_counter() - start


def alternate_llama_server(work: Path, models: dict[str, Path]) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {"host": "127.0.0.1", "port": port, "models": [
        {"model": str(path), "model_alias": name, "n_ctx": 2048, "n_threads": 2, "verbose": False}
        for name, path in models.items()]}
    (work / "server.json").write_text(json.dumps(config))
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file", str(work / "server.json")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1/completions"

    def complete(model: str) -> None:
        body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": 16, "temperature": 0}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            json.load(response)

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                complete("gemma")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        complete("smollm2")
        start = time.perf_counter()
        for n in range(REQUESTS):
            complete(("gemma", "smollm2")[n % 2])
        return time.perf_counter() - start
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    models = {"gemma": gemma_gguf(Path(tempfile.gettempdir()) / "r1-test-models"), "smollm2": smollm2_gguf()}
    work = Path(tempfile.mkdtemp(prefix="r1h-", dir="/tmp"))
    sock = work / "r1.sock"
    r1 = str(Path(sys.executable).with_name("r1"))
    env = {**os.environ, "R1_HOME": str(work / "home"), "R1_SOCKET": str(sock), "R1_NO_AUTOSTART": "1"}
    daemon = subprocess.Popen([r1, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        while not sock.exists():
            time.sleep(0.05)
        for name, path in models.items():
            subprocess.run([r1, "import", str(path), "--name", name], env=env, check=True, capture_output=True)
        memory_table(sock)
        r1_seconds = alternate_r1(sock)
    finally:
        daemon.terminate()
        daemon.wait()
    server_seconds = alternate_llama_server(work, models)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{REQUESTS} requests alternating between Gemma 3 270M and SmolLM2 135M (n_ctx 2048, 2 threads, 16 tokens)\n")
    print(f"{'r1 (both kept loaded)':<40}{r1_seconds:>8.2f} s")
    print(f"{'llama_cpp.server --config_file':<40}{server_seconds:>8.2f} s")
    print(f"\nr1 is {server_seconds / r1_seconds:.1f}x faster")


if __name__ == "__main__":
    main()
