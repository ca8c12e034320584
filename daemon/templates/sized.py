"""A template that came with a request or a Modelfile, as r1 renders it: Ollama's Go converted to Jinja,
Jinja as it is, held to R1_TEMPLATE_MAX_BYTES before and after the conversion."""

from __future__ import annotations

from ..errors import BadRequest
from ..template_limits import too_big


def check_template_size(source: str, max_bytes: int) -> None:
    """Before anything else is done with a template: its size (R1_TEMPLATE_MAX_BYTES). Converting and
    compiling cost time in proportion, and no real template comes near the limit."""
    size = len(source.encode(errors="replace"))
    if size > max_bytes:
        raise BadRequest(too_big(size, max_bytes))


def converted_within(source: str, max_bytes: int) -> str:
    """A template as r1 renders it (Ollama's Go converted to Jinja, Jinja as it is), within
    R1_TEMPLATE_MAX_BYTES as it came and as it is rendered."""
    from .go import as_jinja  # the converter loads when a template comes in

    check_template_size(source, max_bytes)
    converted = as_jinja(source)
    check_template_size(converted, max_bytes)  # Jinja converted from Go is about twice as long
    return converted
