"""Ollama's Go chat templates, converted to the Jinja r1 renders.

Ollama's Modelfiles (`TEMPLATE`), the `template` field of /api/generate and the models in its
registry carry chat templates in Go's text/template dialect. r1 renders Jinja in one place
(templates/template.py), so a Go template is converted once, when it arrives:

    to_jinja(source)        the Jinja; GoTemplateError (a 400) names what cannot be converted
    is_go_template(source)  whether a template is Go rather than Jinja
    as_jinja(source)        a template as r1 stores it: Go converted, Jinja as it is

The converted text starts with a header comment naming how Ollama executes the template; on
seeing it, templates/template.py renders it Ollama's way (execute.py) in an environment with Go's
whitespace rules (no trim_blocks or lstrip_blocks) and the helpers in funcs.py.

Where r1 departs from Ollama on purpose: `{{ .Function }}` and `{{ .Function.Parameters }}`
print JSON (as before Ollama v0.14 and in its pull request 18391), not Go's struct syntax;
`{{ define }}`, `{{ template }}`, `{{ block }}` and the html, js, urlquery and call functions are
refused.
"""

from __future__ import annotations

import functools
import re

from .emit import convert
from .execute import converted_mode, converted_uses, execute
from .funcs import FUNCTIONS
from .syntax import GoTemplateError
from .values import ExecError, show

__all__ = ["FUNCTIONS", "ExecError", "GoTemplateError", "as_jinja", "converted_mode", "converted_uses", "execute",
           "is_go_template", "show", "to_jinja"]

# An action only Go writes: a field, a variable, a comment, a Go keyword, or a Go function
# applied to an argument (Jinja has no `{{ eq a b }}`).
_GO_ACTION = re.compile(
    r"\{\{-?\s*(?:[.$]|/\*|(?:if|range|with|else|end|define|template|block|break|continue)\b|"
    r"(?:json|len|slice|index|eq|ne|lt|le|gt|ge|and|or|not|print|printf|println|toTypeScriptType)\s+[^\s}|])")


def is_go_template(source: str) -> bool:
    """Whether a template is Go's text/template rather than Jinja: it has a Go action and no
    Jinja statement or comment."""
    return "{%" not in source and "{#" not in source and _GO_ACTION.search(source) is not None


@functools.lru_cache(maxsize=64)
def to_jinja(source: str) -> str:
    """The Jinja that renders what Ollama renders with the Go template `source`."""
    return convert(source)


def as_jinja(source: str) -> str:
    return to_jinja(source) if is_go_template(source) else source
