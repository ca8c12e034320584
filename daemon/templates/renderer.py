"""The renderer: a child process of a runner that renders chat templates and does nothing else.

`python -m r1.daemon.templates.renderer LIMITS`: started by a runner (renderers.py), never by hand;
LIMITS is the JSON of its TemplateLimits. It talks over its stdin and stdout, a JSON object a line:

    renderer -> runner   {"ready": true}                       once, when its imports are done
    runner -> renderer   {"source": ..., "messages": [...], "bos_token": ..., ...}   template.render's arguments
    renderer -> runner   {"text": "the prompt"}
                         {"error": "why", "spent": true?}      a 400's message; "spent": it exits now, start another

Why a process of its own: a template that slips past the checks of sandbox.py costs this process, never
the runner holding the model. Its address space is capped (a memory bomb becomes a MemoryError it reports
as a limit), its runner kills it when it overruns its time, and it dies with its runner.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..backends.base import BackendError
from ..child_process import die_with_parent
from ..template_limits import TemplateLimits
from . import template

NICENESS = 10  # added to the runner's: on a busy CPU the model's threads go first


def cap_memory(allowance: int) -> None:
    """Let the address space grow by `allowance` bytes beyond what the process holds now (Linux, where
    RLIMIT_AS holds; macOS does not enforce it)."""
    try:
        import resource

        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + allowance if hard == resource.RLIM_INFINITY else min(size + allowance, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def answer(job: dict[str, Any], limits: TemplateLimits) -> dict[str, Any]:
    try:
        return {"text": template.render(job.pop("source"), job.pop("messages"), limits=limits, **job)}
    except template.OutOfMemory as exc:
        return {"error": str(exc), "spent": True}  # what is left of its heap is not worth trusting
    except BackendError as exc:
        return {"error": str(exc)}


def main(argv: list[str]) -> int:
    die_with_parent()
    # A template that spins takes CPU from the model only where the model leaves some: llama.cpp's threads
    # wait on each other, and one of them waiting for a core slows every sequence of the batch.
    os.nice(NICENESS)
    limits = TemplateLimits.from_frame(json.loads(argv[0]))
    cap_memory(limits.memory)
    out = sys.stdout.buffer
    out.write(b'{"ready":true}\n')
    out.flush()
    for line in sys.stdin.buffer:
        reply = answer(json.loads(line), limits)
        out.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        out.flush()
        if reply.get("spent"):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
