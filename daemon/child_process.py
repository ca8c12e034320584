"""r1's child processes: runners (started by the daemon's scheduler) and template renderers (started by
a runner). Each dies with its parent, and its parent says in words how it ended."""

from __future__ import annotations

import contextlib
import signal
import sys


def how_it_ended(code: int) -> str:
    """A child's exit status in words: "was killed by SIGSEGV", "exited with status 1"."""
    if code >= 0:
        return f"exited with status {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def die_with_parent() -> None:
    """Linux: the kernel kills this process when the thread that started it ends (its process dying,
    whatever the way), even while a C call blocks. Parents start children from threads that live as long
    as they do."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
