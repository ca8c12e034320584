"""Waiting for something a background process or thread does."""

from __future__ import annotations

import time
from typing import Any


def wait_until(check: Any, timeout: float = 10, interval: float = 0.05) -> None:
    """Poll `check` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {check}")
        time.sleep(interval)
