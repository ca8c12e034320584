"""`r1 import --from ollama|hf|lmstudio`: list what another tool keeps, or import it without copying.

The tool's folder comes from its own variables in the user's environment (config.tool_roots), or
--dir; the daemon reads it, so it must be readable by the user the daemon runs as.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..daemon.config import first_existing, tool_roots
from . import render
from .api import Api

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import ProgressEvent, Stream, ToolModel

TOOL_NAMES = {"ollama": "Ollama", "hf": "the Hugging Face cache", "lmstudio": "LM Studio"}


def bring(tool: str, names: tuple[str, ...], folder: str | None, dry_run: bool, everything: bool, trust: bool,
          as_json: bool) -> None:
    root = Path(folder).expanduser().resolve() if folder else first_existing(tool_roots()[tool])
    body = {"from": tool, "dir": str(root), "models": list(names), "all": everything, "trust": trust,
            "dry_run": dry_run}
    progress = render.Progress()
    last: ProgressEvent = {}
    events: Stream[ProgressEvent] = Api.from_env().stream("POST", "/api/import", body)
    for event in events:
        if "total" in event and not as_json:
            progress.update(event["status"], event.get("completed", 0), event["total"])
        elif event.get("status") == "success":
            last = event
    progress.finish()
    if as_json:
        print(json.dumps(last, indent=2))
    elif "models" in last:
        show_listing(tool, root, last["models"])
    else:
        summary(last)


def show_listing(tool: str, root: Path, models: list[ToolModel]) -> None:
    rows = [(m["name"], m["format"], render.human_size(m["size"]), m.get("problem") or "; ".join(m["notes"]) or "")
            for m in models]
    print(f"{TOOL_NAMES[tool]} at {root}:")
    print(render.table(("NAME", "FORMAT", "SIZE", "NOTES"), rows))
    importable = [m["name"] for m in models if "problem" not in m]
    if importable:
        print(f"\nimport them with `r1 import --from {tool} NAME ...`, or all {len(importable)} with --all")


def summary(done: ProgressEvent) -> None:
    for model in done["imported"]:
        notes = "".join(f"\n  note: {note}" for note in model["notes"])
        print(f"imported {model['name']} id {model['digest'][:12]}{notes}")
    checked = "not hashed (--trust: the names they are stored under taken as their sha256)" if done["trusted"] \
        else "every byte hashed"
    print(f"{len(done['imported'])} models in {done['seconds']:.2f} s: {render.human_size(done['bytes_linked'])} linked, "
          f"{render.human_size(done['bytes_copied'])} copied; {checked}")
