"""A child process of r1 dies with its parent: runners with the daemon, renderers with their runner."""

from __future__ import annotations

import sys


def die_with_parent() -> None:
    """Linux: the kernel kills this process when the thread that started it ends (its process dying,
    whatever the way), even while a C call blocks. Parents start children from threads that live as long
    as they do."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
