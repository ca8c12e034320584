"""A model's settings as they come in, checked before anything is stored: a Modelfile's fields
(`r1 create`: TEMPLATE, SYSTEM, LICENSE, PARAMETER, MESSAGE) and the same fields read from an
Ollama model's small layers (ollama_settings.py), so that both are held to one standard.
"""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..options import OPTION_TYPES
from ..options.check import check_options
from ..store import Overrides


def check_template(source: str) -> str:
    """The template as r1 stores it: an Ollama Go template converted to Jinja (a 400 names what
    cannot be converted), Jinja as it is; one that will not compile is refused now rather than
    at the first chat."""
    from jinja2 import TemplateSyntaxError  # loaded when a template comes in, not at start-up

    from ..templates.go import as_jinja
    from ..templates.sandbox import reading_environment

    source = as_jinja(source)
    try:
        reading_environment().parse(source)
    except TemplateSyntaxError as exc:
        raise BadRequest(f"TEMPLATE is not valid Jinja (line {exc.lineno}): {exc.message}") from exc
    except RecursionError:
        raise BadRequest("TEMPLATE nests its blocks or expressions too deeply for r1 to read it") from None
    return source


def check_settings(body: dict[str, Any]) -> Overrides:
    """The Modelfile fields of a create request (or of an Ollama model's layers), checked."""
    settings: dict[str, Any] = {}
    for key in ("template", "system", "license"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, list) and key == "license":
            value = "\n".join(map(str, value))
        if not isinstance(value, str):
            raise BadRequest(f"field '{key}' must be a string")
        settings[key] = value
    if "template" in settings:
        settings["template"] = check_template(settings["template"])
    parameters = body.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise BadRequest("field 'parameters' must be an object of option names and values")
        unknown = sorted(set(parameters) - set(OPTION_TYPES))
        if unknown:
            raise BadRequest(f"unknown parameter {', '.join(unknown)}; r1 knows {', '.join(sorted(OPTION_TYPES))}")
        settings["parameters"] = check_options(parameters)
    messages = body.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
        ):
            raise BadRequest("field 'messages' must be a list of {role, content} objects")
        settings["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
    return Overrides(**settings)
