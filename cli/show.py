"""`r1 show NAME`: what the daemon's /api/show says about a model, as a person reads it."""

from __future__ import annotations

from . import render


def print_model(info: dict) -> None:
    """Print /api/show's answer for a stored or remote model."""
    if "remote" in info:
        _show_remote(info)
        return
    details = info["details"]
    arch = info["model_info"].get("general.architecture") or "-"
    facts = [
        ("architecture", arch),
        ("parameters", details["parameter_size"] or "-"),
        ("context length", str(info["model_info"].get(f"{arch}.context_length", "-"))),
        ("quantization", details["quantization_level"] or "-"),
        ("format", details["format"]),
        ("chat template", "yes" if info["template"] else "none"),
        ("size", render.human_size(info["size"])),
        ("id", info["digest"][:12]),
        ("path", info["path"]),
    ]
    if "memory" in info:
        memory = info["memory"]
        verdict = "fits" if memory["fits"] else "DOES NOT FIT"
        slots = memory["slots"]
        facts.append(("memory", f"about {render.human_size(memory['estimate'])} at num_ctx {memory['num_ctx']} "
                                f"x {slots} slot{'s' if slots != 1 else ''} "
                                f"({verdict} the {render.human_size(memory['budget'])} budget)"))
    if info["license"]:
        facts.append(("license", info["license"].splitlines()[0]))
    print("  Model")
    for label, value in facts:
        print(f"    {label:<16}{value}")
    print("\n  Files")
    for f in info["files"]:
        state = f"   {f['source']['kind']} from {f['source']['path']}" if "source" in f else ""
        if "broken" in f:
            state = f"   BROKEN: {f['broken'].split(': ', 1)[1]}; import it again"
        elif not f["present"]:
            state = "   MISSING: import or pull the model again"
        print(f"    {f['path']}   {render.human_size(f['size'])}   {f['digest'][:19]}{state}")


def _show_remote(info: dict) -> None:
    remote = info["remote"]
    price = remote["price"]
    facts = [("remote", remote["name"]), ("upstream model", remote["model"]),
             ("context length", str(remote["context_length"] or "not reported by the upstream")),
             ("price", f"${price['input']:g} in, ${price['output']:g} out per million tokens" if price else "not set "
              "(r1 remote price)"), ("id", info["digest"][:12])]
    print("  Model")
    for label, value in facts:
        print(f"    {label:<16}{value}")
