"""llama.cpp's own C++ server (the `xllamacpp` wheel) on Gemma 3 270M, for benchmarks/batching.py to set r1 beside.

    PYTHON_WITH_XLLAMACPP benchmarks/llama_server.py MODEL.gguf PORT SLOTS THREADS CTX

Runs in its own environment (pip install xllamacpp), so r1's stays as users install it. Prints
`ready` once the server answers on 127.0.0.1:PORT, then serves until it is killed.
"""

from __future__ import annotations

import sys
import threading

import xllamacpp


def main() -> None:
    model, port, slots, threads, ctx = sys.argv[1], *map(int, sys.argv[2:])
    params = xllamacpp.CommonParams()
    params.model.path = model
    params.port = port
    params.n_parallel = slots
    params.n_ctx = ctx * slots  # each slot gets ctx tokens, as r1 gives each of its slots num_ctx
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = True
    server = xllamacpp.Server(params)
    print("ready", server.listening_address, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
