"""llama.cpp's batch API with no server around it: the speed limit that r1 and llama-server are set beside.

    python -m benchmarks.batch_api MODEL.gguf THREADS CTX TOKENS EXTRA_BUFFERS(0|1) SEQUENCES...

For each number of sequences: one context with that many sequences (each in its own KV stream of CTX
cells, as r1 makes them), their prompts evaluated in one batch, then one token per sequence per
llama_decode, greedy. Prints one JSON line per number of sequences: {"sequences", "rate", "tokens",
"seconds"}, where for one sequence `rate` is the decode rate ((tokens - 1) over the time from the first
token to the last, as benchmarks/batching.py measures a client) and for several the aggregate (all tokens
over the time from the start of the prompts to the last token). Runs in a process of its own, so that a
kernel that crashes on this CPU (extra buffers on an AMX Xeon) takes only it down.
"""

from __future__ import annotations

import json
import sys
import time

import llama_cpp

LIB = llama_cpp.llama_cpp
PROMPT = "Once upon a time, in a small village by the sea,"  # benchmarks/generate_speed.py's


def context(model: object, sequences: int, threads: int, ctx: int) -> object:
    params = LIB.llama_context_default_params()
    params.n_ctx = ctx * sequences
    params.n_batch = params.n_ubatch = 512
    params.n_seq_max = sequences
    params.n_threads = params.n_threads_batch = threads
    params.kv_unified = False
    return LIB.llama_init_from_model(model, params)


def tokenize(vocab: object, text: str) -> list[int]:
    data = text.encode()
    out = (LIB.llama_token * (len(data) + 8))()
    n = LIB.llama_tokenize(vocab, data, len(data), out, len(out), True, False)
    return list(out[:n])


def put(batch: object, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
    batch.token[i] = token
    batch.pos[i] = pos
    batch.n_seq_id[i] = 1
    batch.seq_id[i][0] = seq
    batch.logits[i] = logits


def run(model: object, vocab: object, sequences: int, threads: int, ctx: int, tokens: int) -> dict[str, float]:
    lctx = context(model, sequences, threads, ctx)
    batch = LIB.llama_batch_init(512, 0, 1)
    samplers = [LIB.llama_sampler_init_greedy() for _ in range(sequences)]
    prompts = [tokenize(vocab, f"{100 + s}. {PROMPT}") for s in range(sequences)]
    started = time.perf_counter()
    n, rows = 0, []
    for seq, prompt in enumerate(prompts):
        for pos, token in enumerate(prompt):
            put(batch, n, token, pos, seq, pos == len(prompt) - 1)
            n += 1
        rows.append(n - 1)
    batch.n_tokens = n
    assert LIB.llama_decode(lctx, batch) == 0
    positions = [len(p) for p in prompts]
    stamps = []
    for _ in range(tokens):
        sampled = [LIB.llama_sampler_sample(samplers[s], lctx, rows[s]) for s in range(sequences)]
        stamps.append(time.perf_counter())
        for seq, token in enumerate(sampled):
            put(batch, seq, token, positions[seq], seq, True)
            positions[seq] += 1
        rows = list(range(sequences))
        batch.n_tokens = sequences
        assert LIB.llama_decode(lctx, batch) == 0
    for sampler in samplers:
        LIB.llama_sampler_free(sampler)
    LIB.llama_batch_free(batch)
    LIB.llama_free(lctx)
    if sequences == 1:
        seconds = stamps[-1] - stamps[0]
        return {"sequences": 1, "rate": (tokens - 1) / seconds, "tokens": tokens, "seconds": seconds}
    seconds = stamps[-1] - started
    return {"sequences": sequences, "rate": sequences * tokens / seconds, "tokens": sequences * tokens,
            "seconds": seconds}


def main() -> None:
    path, threads, ctx, tokens, extra, *counts = sys.argv[1:]
    LIB.llama_backend_init()
    quiet = LIB.llama_log_callback(lambda *_: None)  # kept referenced: llama.cpp calls it from C
    LIB.llama_log_set(quiet, None)
    params = LIB.llama_model_default_params()
    params.use_extra_bufts = extra == "1"
    model = LIB.llama_model_load_from_file(path.encode(), params)
    vocab = LIB.llama_model_get_vocab(model)
    run(model, vocab, 1, int(threads), int(ctx), 8)  # warm up
    for count in counts:
        print(json.dumps(run(model, vocab, int(count), int(threads), int(ctx), int(tokens))), flush=True)


if __name__ == "__main__":
    main()
