"""The cores a test may use: the suite runs a pytest worker per core, and each worker's runners get
its share (R1_NUM_THREAD, set by conftest's pytest_configure)."""

from __future__ import annotations

import os
from typing import Any


def worker_threads() -> int:
    """The threads for a runner a test starts itself: this worker's share of the cores, as the daemons'
    runners get it."""
    return int(os.environ["R1_NUM_THREAD"])


def own_runner_load(**options: Any) -> dict[str, Any]:
    """Load options for a runner a test starts itself, without a scheduler: this worker's share of the cores,
    and llama.cpp's extra buffer types off, since nothing falls back when they crash (CPUs with AMX, FACTS.md)."""
    return {"num_thread": worker_threads(), "extra_buffers": False, **options}
