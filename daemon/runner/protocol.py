"""Frames between the daemon and a runner: one JSON object per line over a socketpair.

daemon -> runner   {"id": n, "op": "load" | "generate" | "embed" | "tokenize" | "health" | "ping" | "cancel", ...}
runner -> daemon   {"id": n, "start": {...}}      once per generate, before its tokens
                   {"id": n, "t": "text"}         generated text, in order
                   {"id": n, "done": {...}}       the end of a generate, with its counts and timings
                   {"id": n, "result": {...}}     the answer to any other op
                   {"id": n, "error": "...", "status": 400 | 500}

JSON lines keep the protocol readable in a log and cost a few microseconds a token,
against milliseconds to compute one.
"""

from __future__ import annotations

import json
from typing import Any

Frame = dict[str, Any]
# An embedding batch or a long prompt can be large; a line beyond this is a broken peer.
MAX_FRAME = 256 * 1024 * 1024


def encode(frame: Frame) -> bytes:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Frame:
    frame = json.loads(line)
    if not isinstance(frame, dict) or "id" not in frame:
        raise ValueError(f"not a runner frame: {line[:200]!r}")
    return frame
