"""Ollama's Modelfile, read into the body of a `POST /api/create`.

    # FROM: a model in the store, a local .gguf file or MLX folder, or REMOTE:upstream-id (r1 remote)
    FROM llama3.2
    # DRAFT: a smaller model of the same family in the store, for speculative decoding
    DRAFT llama3.2:1b
    PARAMETER temperature 0.7
    PARAMETER stop "<|im_end|>"
    SYSTEM \"\"\"You are
    a pirate.\"\"\"

Instructions are case-insensitive; a value is a \"\"\"triple-quoted\"\"\" text (which may span
lines), a "quoted" one, or the rest of the line. `#` starts a comment line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..daemon.options import OPTION_TYPES
from . import render
from .api import Api, Json

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from typing import NoReturn

    from .shapes import ProgressEvent, Stream

ROLES = ("system", "user", "assistant")
COMMANDS = ("from", "parameter", "system", "template", "license", "message", "adapter", "draft")


class ModelfileError(ValueError):
    """A Modelfile r1 cannot use; the message names the file and line."""


def parameter_value(name: str, value: str) -> object:
    """`value` as the type the option table gives parameter `name` (a stop value stays a single
    string); ValueError says what is wrong."""
    kind = OPTION_TYPES.get(name)
    if kind is None:
        raise ValueError(f"unknown parameter '{name}' (known: {', '.join(sorted(OPTION_TYPES))})")
    if kind is bool:
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise ValueError(f"parameter '{name}' must be true or false, not {value!r}")
    if kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"parameter '{name}' must be {'an integer' if kind is int else 'a number'}, "
                             f"not {value!r}") from None
    return value


def _split(text: str) -> tuple[str, str]:
    """The first word of `text` and the rest, with the whitespace between them dropped."""
    word, *rest = text.lstrip().split(None, 1)
    return word, rest[0] if rest else ""


def _value(first: str, lines: list[str], at: int, fail: Callable[[str], NoReturn]) -> tuple[str, int]:
    """The value that starts with `first` (the rest of line `at`), and the index of the line after it."""
    if first.startswith('"""'):
        text = first[3:]
        while '"""' not in text:
            if at + 1 >= len(lines):
                fail('unterminated """')
            at += 1
            text += "\n" + lines[at]
        value, _, after = text.partition('"""')
        if after.strip():
            fail('unexpected text after the closing """')
        return value, at + 1
    first = first.rstrip()
    if first.startswith('"'):
        if len(first) < 2 or not first.endswith('"'):
            fail('unterminated "')
        return first[1:-1], at + 1
    return first, at + 1


def resolve_from(value: str, base: Path) -> tuple[str, str]:
    """("path", absolute path) when FROM names a local file or folder, else ("from", model name)."""
    expanded = os.path.expanduser(value)
    is_path = value.startswith(("/", "./", "../", "~")) or (base / expanded).exists()
    if not is_path:
        return "from", value
    return "path", os.path.abspath(base / expanded)  # an absolute `expanded` replaces base


def parse(text: str, source: str = "Modelfile", base: Path | None = None) -> Json:
    """The /api/create body a Modelfile describes (all but "model"); relative FROM paths are
    taken from `base` (the Modelfile's folder; default: the current one)."""
    base = Path.cwd() if base is None else base
    lines = text.lstrip("\ufeff").splitlines()
    body: Json = {}
    parameters: Json = {}
    stops: list[object] = []  # PARAMETER stop: each line adds one
    messages: list[Json] = []
    licenses: list[str] = []
    at = 0
    while at < len(lines):
        line_no, line = at + 1, lines[at].strip()

        def fail(message: str, line_no: int = line_no) -> NoReturn:  # bound now: the loop moves on
            raise ModelfileError(f"{source}, line {line_no}: {message}")

        if not line or line.startswith("#"):
            at += 1
            continue
        command, rest = _split(lines[at])
        command = command.lower()
        if command not in COMMANDS:
            fail(f"unknown instruction {command.upper()!r}; expected one of {', '.join(c.upper() for c in COMMANDS)}")
        if command == "adapter":
            fail("ADAPTER is not supported by r1")
        if not rest:
            fail(f"{command.upper()} needs a value")

        if command in ("parameter", "message"):
            key, rest = _split(rest)
            if not rest:
                fail(f"{command.upper()} needs a name and a value")
        value, at = _value(rest, lines, at, fail)

        if command == "from":
            if "from" in body or "path" in body:
                fail("a second FROM; a Modelfile has one")
            kind, target = resolve_from(value, base)
            if kind == "path" and not os.path.exists(target):
                fail(f"no such file or folder: {target}")
            body[kind] = target
        elif command == "parameter":
            name = key.lower()
            try:
                typed = parameter_value(name, value)
            except ValueError as exc:
                fail(str(exc))
            if name == "stop":
                parameters.setdefault("stop", stops)
                stops.append(typed)
            else:
                parameters[name] = typed
        elif command == "message":
            if key.lower() not in ROLES:
                fail(f"MESSAGE role must be one of {', '.join(ROLES)}, not {key!r}")
            messages.append({"role": key.lower(), "content": value})
        elif command == "license":
            licenses.append(value)
        else:  # system, template, draft: the last one counts, as in Ollama
            body[command] = value

    if "from" not in body and "path" not in body:
        raise ModelfileError(f"{source}: no FROM line; a Modelfile must say which model it builds on")
    if parameters:
        body["parameters"] = parameters
    if messages:
        body["messages"] = messages
    if licenses:
        body["license"] = "\n\n".join(licenses)
    return body


def read(path: Path) -> Json:
    """The /api/create body (all but "model") of the Modelfile at `path`."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelfileError(f"cannot read {path}: {exc.strerror}") from None
    return parse(text, str(path), path.parent)


def create(api: Api, name: str, fields: Json) -> int:
    """`r1 create`: model `name` made of these Modelfile fields; statuses go to stderr, with progress bars
    for the files of a FROM model the daemon pulls first."""
    progress = render.Progress()
    events: Stream[ProgressEvent] = api.stream("POST", "/api/create", {"model": name, **fields})
    for event in events:
        if progress.pulling(event):
            continue
        if event.get("status") != "success":
            print(event.get("status", ""), file=sys.stderr, flush=True)
    progress.finish()
    print(f"created {name}")
    return 0
