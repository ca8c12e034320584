"""llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`, the `server` extra) as a
real upstream for r1's remote engines: what the fakes imitate, checked against the real thing.

    with llama_server(smollm2_gguf()) as base_url:   # http://127.0.0.1:PORT, its API under /v1
        openai.OpenAI(base_url=base_url + "/v1", api_key="none")
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .loopback import free_port

START_DEADLINE = 60.0  # seconds; SmolLM2 135M is up in about one

# `python -m llama_cpp.server` with llama.cpp's extra buffer types off: on CPUs with AMX they crash the
# first decode (FACTS.md), and the server, unlike r1, has no fallback. This upstream is a peer to talk
# to, not a kernel test.
WITHOUT_EXTRA_BUFFERS = """
import runpy
import llama_cpp.llama_cpp as low_level
default_params = low_level.llama_model_default_params
def without_extra_buffers():
    params = default_params()
    params.use_extra_bufts = False
    return params
low_level.llama_model_default_params = without_extra_buffers
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


class LlamaServerFailed(RuntimeError):
    pass


def _answers(port: int, api_key: str | None) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/v1/models", headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextlib.contextmanager
def llama_server(model_path: Path, *, alias: str | None = None, api_key: str | None = None, n_ctx: int = 2048,
                 n_threads: int | None = None) -> Iterator[str]:
    """Start the server on a free loopback port, yield its base URL once GET /v1/models answers, and
    stop it afterwards. LlamaServerFailed (with the end of its output) if it exits or is not up in time.
    Without `alias` the model's id is its path (and any model name in a request is served anyway);
    with `api_key` every request needs `Authorization: Bearer <api_key>`."""
    port = free_port()
    # By default the share of the cores an r1 runner gets in this test run (conftest's R1_NUM_THREAD).
    threads = str(n_threads or os.environ.get("R1_NUM_THREAD", "2"))
    options = [*(["--model_alias", alias] if alias else []), *(["--api_key", api_key] if api_key else [])]
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty server must never block on it
        process = subprocess.Popen(
            [sys.executable, "-c", WITHOUT_EXTRA_BUFFERS, "--model", str(model_path), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", threads, "--n_threads_batch", threads,
             *options],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

        def failed(why: str) -> LlamaServerFailed:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            return LlamaServerFailed(f"llama_cpp.server {why}; its output ends with:\n{tail}")

        try:
            deadline = time.monotonic() + START_DEADLINE
            while not _answers(port, api_key):
                if process.poll() is not None:
                    raise failed(f"exited with {process.returncode} before answering")
                if time.monotonic() > deadline:
                    raise failed(f"did not answer GET /v1/models within {START_DEADLINE:.0f} s")
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
