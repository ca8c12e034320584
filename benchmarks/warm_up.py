"""What the load-time warm-up costs: r1's GGUF backend loading a model with and without it, and
the first token that follows, on Gemma 3 270M and SmolLM2 135M.

    python -m benchmarks.warm_up [--runs 5]

Each run loads the model in a fresh process (`LlamaCppBackend`, n_threads=2, num_ctx 4096), then
times one greedy token after a short prompt. "without" is the same backend with `_warm_up`
replaced by nothing. With extra buffers on (the default) the warm-up decodes 17 tokens, with them
off 2 (backends/llama_cpp.py says why). The runs alternate; the table gives medians. The warm-up runs
the kernels a real prompt runs, so part of what it adds to the load, the first request no longer pays.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
from pathlib import Path

from tests.support.tinymodels import gemma_gguf, smollm2_gguf

ONE_RUN = r"""
import json, sys, time
from pathlib import Path
from r1.daemon.backends.llama_cpp import LlamaCppBackend
if sys.argv[2] == "without":
    LlamaCppBackend._warm_up = lambda self, path: None
started = time.perf_counter()
backend = LlamaCppBackend(Path(sys.argv[1]), {"num_ctx": 4096, "num_thread": 2, "extra_buffers": sys.argv[3] == "on"})
loaded = time.perf_counter()
tokens = backend.tokenize("Why is the sky blue? Answer in two sentences, for a child of seven.")
for _ in backend.stream(tokens, {"temperature": 0}, None):
    break  # the first token (or the end, for a model that ends at once)
first = time.perf_counter()
print(json.dumps({"load": loaded - started, "first_token": first - loaded}))
"""


def run_once(model: Path, mode: str, extra_buffers: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", ONE_RUN, str(model), mode, extra_buffers],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_ms(runs: list[dict[str, float]], key: str) -> float:
    """The median of one timing (seconds) over `runs`, in milliseconds."""
    return statistics.median(run[key] for run in runs) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    models = {
        "Gemma 3 270M Q4_K_M": gemma_gguf(Path("/tmp/r1-test-models")),
        "SmolLM2 135M Q4_1": smollm2_gguf(),
    }
    print(f"{'model':<22}{'extra buffers':>14}{'load without':>14}{'load with':>12}{'warm-up':>10}"
          f"{'1st token without':>20}{'1st token with':>17}")
    for (label, path), extra_buffers in itertools.product(models.items(), ("on", "off")):
        runs: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
        run_once(path, "with", extra_buffers)  # the file in the page cache for both
        for _ in range(args.runs):
            for mode in runs:
                runs[mode].append(run_once(path, mode, extra_buffers))
        unwarmed, warmed = runs["without"], runs["with"]
        print(f"{label:<22}{extra_buffers:>14}"
              f"{median_ms(unwarmed, 'load'):>11.0f} ms{median_ms(warmed, 'load'):>9.0f} ms"
              f"{median_ms(warmed, 'load') - median_ms(unwarmed, 'load'):>+7.0f} ms"
              f"{median_ms(unwarmed, 'first_token'):>17.0f} ms{median_ms(warmed, 'first_token'):>14.0f} ms")


if __name__ == "__main__":
    main()
