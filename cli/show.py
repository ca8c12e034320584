"""`r1 show NAME`: what the daemon's /api/show says about a model, as a person reads it.

The sections are Ollama's, in its order (Model, Capabilities, Parameters, System, License), then
r1's own (Memory, Files). Each section is a table whose columns line up.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import render

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import MemoryFit, ModelFile, ModelInfo

HEAD_LINES = 2  # of the system prompt and the license, as Ollama shows them


def print_model(info: ModelInfo) -> None:
    """Print /api/show's answer for a stored or remote model."""
    if "remote" in info:
        _section("Model", _remote_facts(info))
    else:
        _section("Model", _model_facts(info))
    _section("Capabilities", [[name] for name in info.get("capabilities", [])])
    _section("Parameters", [line.split(None, 1) for line in info.get("parameters", "").splitlines() if line.strip()])
    _section("System", _head(info.get("system", "")))
    _section("License", _head(info.get("license", "")))
    if "memory" in info:
        _section("Memory", [[_memory_line(info["memory"])]])
    if info.get("files"):
        _section(f"Files (in {info['path']})", [_file_row(f) for f in info["files"]])


def print_field(info: ModelInfo, field: str) -> None:
    """One field of /api/show's answer as it is (`r1 show --modelfile`), for a file or a pipe."""
    if text := str(info.get(field) or ""):
        print(text, end="" if text.endswith("\n") else "\n")


def _section(title: str, rows: Sequence[Sequence[str]]) -> None:
    """`  Title` and its rows indented beneath, columns aligned; nothing for an empty section."""
    if not rows:
        return
    width = max(len(row) for row in rows)
    padded = [[*row, *[""] * (width - len(row))] for row in rows]
    table = render.table(padded[0], padded[1:])
    print(f"  {title}")
    print("\n".join(f"    {line}" for line in table.splitlines()))
    print()


def _model_facts(info: ModelInfo) -> list[list[str]]:
    details, model_info = info["details"], info["model_info"]
    arch = str(model_info.get("general.architecture") or "-")
    facts = [
        ["architecture", arch],
        ["parameters", details["parameter_size"] or "-"],
        ["context length", str(model_info.get(f"{arch}.context_length", "-"))],
        ["embedding length", str(model_info.get(f"{arch}.embedding_length", "-"))],
        ["quantization", details["quantization_level"] or "-"],
        ["format", details["format"]],
        ["size", render.human_size(info["size"])],
        ["id", info["digest"][:12]],
    ]
    if "completion" in info.get("capabilities", []) and not info["template"]:
        # Chat answers need one: without it, only raw prompts (`/api/generate` with raw) make sense.
        facts.append(["chat template", "none"])
    return facts


def _remote_facts(info: ModelInfo) -> list[list[str]]:
    remote = info["remote"]
    price = remote["price"]
    return [["remote", remote["name"]], ["upstream model", remote["model"]],
            ["context length", str(remote["context_length"] or "not reported by the upstream")],
            ["price", f"${price['input']:g} in, ${price['output']:g} out per million tokens" if price
             else "not set (r1 remote price)"], ["id", info["digest"][:12]]]


def _head(text: str) -> list[list[str]]:
    """The first non-blank lines of a text, and `...` when there is more."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [[line] for line in lines[:HEAD_LINES]] + ([["..."]] if len(lines) > HEAD_LINES else [])


def _memory_line(memory: MemoryFit) -> str:
    slots = memory["slots"]
    verdict = "fits" if memory["fits"] else "DOES NOT FIT"
    tier = f"; {render.human_size(memory['kv_ram'])} of it KV cache in RAM" if memory.get("kv_ram") else ""
    if memory.get("device"):  # the layers that fit the GPU go there, and only the rest counts in the budget
        tier += f"; {render.human_size(memory['device'])} on the GPU, {render.human_size(memory['host'])} on the host"
    kv_type = memory.get("kv_cache_type", "f16")
    kv_type = f", {kv_type} KV cache" if kv_type != "f16" else ""
    return (f"about {render.human_size(memory['estimate'])} at num_ctx {memory['num_ctx']} "
            f"x {slots} slot{'s' if slots != 1 else ''}{kv_type} ({verdict} the {render.human_size(memory['budget'])} "
            f"budget{tier})")


def _file_row(file: ModelFile) -> list[str]:
    if "broken" in file:
        state = f"BROKEN: {file['broken'].split(': ', 1)[1]}; import it again"
    elif not file["present"]:
        state = "MISSING: import or pull the model again"
    elif "source" in file:
        state = f"{file['source']['kind']} from {file['source']['path']}"
    else:
        state = ""
    # A companion of the language model: its vision projector, or the draft model speculative decoding uses.
    role = {"projector": "vision projector", "draft": "draft model"}.get(file.get("kind", ""))
    if role:
        state = f"{role}; {state}" if state else role
    return [file["path"], render.human_size(file["size"]), file["digest"][:19], state]
