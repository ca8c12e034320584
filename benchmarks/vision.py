"""An image in a GGUF model's prompt: what it costs to the first token, and what a slot that holds it saves.

    python -m benchmarks.vision [--model M.gguf --projector mmproj.gguf] [--runs 5] [--quick]

In-process, on r1's backend (backends/llama_cpp.py with the load option `projector`; one slot, num_ctx 2048,
the tiny model's 256; greedy, one token asked): the same question with no image, with an image the slot has
not seen (mtmd encodes it and decodes its embeddings), with that image again (its cells reused: only the last
token is evaluated), and with another image after it (kept apart by its hash: encoded again). Without --model, tests/support/tinyvision.py's
random-weight model and projector (a 56-pixel image, 16 positions): their figures are the plumbing's own
overhead; a real vision model (Gemma 3 with its mmproj) shows the encoder's cost, which reuse saves.
CPU time of this process per case (process_time: the 2 shared cores make wall time noisy), median of
--runs; --quick: 2 runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from r1.daemon.backends.llama_cpp import LlamaCppBackend
from r1.daemon.backends.llama_vision import MARKER
from tests.support.tinyvision import png, write_tiny_vision_model

QUESTION = "<|im_start|>user\n{images}What is in the picture?<|im_end|>\n<|im_start|>assistant\n"


def first_token(backend: LlamaCppBackend, images: list[bytes]) -> tuple[float, int]:
    """CPU seconds to the first token of the question with these images, and the prompt's positions."""
    text = QUESTION.format(images=MARKER * len(images))
    started = time.process_time()
    placed = backend.image_prompt(text, images) if images else None
    tokens = placed.tokens if placed else backend.tokenize(text)
    backend.add(0, tokens, {"temperature": 0, "num_predict": 1}, None, draft=False,
                **({"images": placed} if placed else {}))
    while not backend.step():
        pass
    backend.cancel(0)
    return time.process_time() - started, len(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--projector", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    with tempfile.TemporaryDirectory() as tmp:
        model, projector = (args.model, args.projector) if args.model else write_tiny_vision_model(Path(tmp))
        load = {"num_ctx": 2048 if args.model else 256, "num_parallel": 1, "projector": str(projector),
                "lookup_drafts": 0}
        backend = LlamaCppBackend(model, load)
        red, blue = png((255, 0, 0), 64), png((0, 0, 255), 64)
        cases: dict[str, list[float]] = {}
        positions: dict[str, int] = {}
        for _ in range(runs):
            first_token(backend, [blue])  # the slot holds another image to start with
            for name, images in (("no image", []), ("a new image", [red]), ("the same image again", [red]),
                                 ("another image after it", [blue])):
                seconds, count = first_token(backend, images)
                cases.setdefault(name, []).append(seconds)
                positions[name] = count
        backend.close()
    print(f"{model.name} + {projector.name}: CPU ms to the first token, median of {runs}")
    print(f"{'case':<26}{'positions':>10}{'CPU ms':>10}")
    for name, seconds in cases.items():
        print(f"{name:<26}{positions[name]:>10}{statistics.median(seconds) * 1000:>10.1f}")


if __name__ == "__main__":
    main()
