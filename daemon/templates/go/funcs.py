"""The functions a converted template calls: Go's template builtins with Go's rules (eq on a
string and a number is an error, len counts bytes, range walks a map's keys sorted) and the
ones Ollama adds (json, currentDate, yesterdayDate, toTypeScriptType).

`and`, `or` and `not` need no function: Jinja's operators return what Go's do.
"""

from __future__ import annotations

import datetime
import re
from typing import Any
from collections.abc import Callable, Iterable

from ... import template_limits
from .values import ExecError, GoMap, ToolProperty, field_of, format_value, go_type, to_json


def field(value: Any, *names: str) -> Any:
    """.A.B of a value."""
    for name in names:
        value = field_of(value, name)
    return value


def range_items(value: Any) -> Iterable[tuple[Any, Any]]:
    """What `range` walks: (index, element) of a slice, (key, value) of a map in key order,
    0..n-1 of an integer (refused at once when that is more than the render's loop limit); nothing of nil."""
    if value is None:
        return []
    if isinstance(value, dict):
        return sorted(value.items())
    if isinstance(value, list):
        return list(enumerate(value))
    if isinstance(value, int) and not isinstance(value, bool):
        template_limits.current().check_loops(value, f"range {value}")
        return ((i, i) for i in range(value))
    raise ExecError(f"range can't iterate over {format_value(value)}")


# --- comparisons -------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "string")):
        if isinstance(value, kind):
            return name
    return "nil" if value is None else "other"


def eq(first: Any, *others: Any) -> bool:
    """Whether the first argument equals any of the others."""
    if not others:
        raise ExecError("error calling eq: missing argument for comparison")
    for other in others:
        if _kind(first) != _kind(other):
            if first is not None and other is not None:
                raise ExecError(f"error calling eq: incompatible types for comparison: {go_type(first)} and {go_type(other)}")
        elif _kind(first) == "other" and isinstance(first, (list, dict)):
            raise ExecError(f"error calling eq: non-comparable type {go_type(first)}")
        elif first is other or first == other:
            return True
    return False


def ne(first: Any, second: Any) -> bool:
    return not eq(first, second)


def _ordered(name: str, first: Any, second: Any) -> None:
    kinds = _kind(first), _kind(second)
    if kinds[0] != kinds[1]:
        raise ExecError(f"error calling {name}: incompatible types for comparison")
    if kinds[0] not in ("int", "float", "string"):
        raise ExecError(f"error calling {name}: invalid type for comparison")


def lt(first: Any, second: Any) -> bool:
    _ordered("lt", first, second)
    return bool(first < second)


def le(first: Any, second: Any) -> bool:
    _ordered("le", first, second)
    return bool(first <= second)


def gt(first: Any, second: Any) -> bool:
    _ordered("gt", first, second)
    return bool(first > second)


def ge(first: Any, second: Any) -> bool:
    _ordered("ge", first, second)
    return bool(first >= second)


# --- collections -------------------------------------------------------------------------------


def length(value: Any) -> int:
    """len: bytes of a string, elements of a slice or map."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, (list, dict)):
        return len(value)
    raise ExecError(f"error calling len: len of type {go_type(value)}")


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExecError(f"error calling {name}: cannot index slice/array with type {go_type(value)}")
    return value


def index(value: Any, *keys: Any) -> Any:
    """index x 1 2: x[1][2], for slices, strings (a byte) and maps (missing keys: zero)."""
    for key in keys:
        if value is None:
            raise ExecError("error calling index: index of untyped nil")
        if isinstance(value, dict):
            value = value.get(key, value.zero() if isinstance(value, GoMap) else None)
            continue
        data = value.encode() if isinstance(value, str) else value
        if not isinstance(data, (list, bytes)):
            raise ExecError(f"error calling index: can't index item of type {go_type(value)}")
        at = _int("index", key)
        if not 0 <= at < len(data):
            raise ExecError(f"error calling index: index out of range: {at}")
        value = data[at]
    return value


def slice_(value: Any, *bounds: Any) -> Any:
    """slice x 1 2: x[1:2], for slices and strings (by bytes, as Go)."""
    if len(bounds) > 3 or (isinstance(value, str) and len(bounds) > 2):
        raise ExecError("error calling slice: too many slice indexes")
    if not isinstance(value, (list, str)):
        raise ExecError(f"error calling slice: can't slice item of type {go_type(value)}")
    data = value.encode() if isinstance(value, str) else value
    cut = [_int("slice", b) for b in bounds]
    start = cut[0] if cut else 0
    end = cut[1] if len(cut) > 1 else len(data)
    limit = cut[2] if len(cut) > 2 else len(data)
    if not 0 <= start <= end <= limit <= len(data):
        raise ExecError(f"error calling slice: index out of range: {max(cut)}")
    part = data[start:end]
    return part.decode(errors="replace") if isinstance(part, bytes) else part


# --- printing ----------------------------------------------------------------------------------


def print_(*args: Any) -> str:
    """fmt.Sprint: spaces between operands when neither is a string."""
    out = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(format_value(arg))
    return "".join(out)


def println(*args: Any) -> str:
    return " ".join(format_value(a) for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?([a-zA-Z%])")


def _quote(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(char)])
        elif not char.isprintable():
            out.append(f"\\x{ord(char):02x}" if ord(char) < 0x80 else f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return "".join(out) + '"'


def _verb(verb: str, flags: str, precision: str | None, arg: Any) -> str | None:
    """One argument under one verb, or None where Go writes %!verb(type=value)."""
    is_int = isinstance(arg, int) and not isinstance(arg, bool)
    if verb == "v":
        return format_value(arg)
    if verb == "s":
        return arg if isinstance(arg, str) else format_value(arg) if not isinstance(arg, (int, float)) else None
    if verb == "q":
        return _quote(arg) if isinstance(arg, str) else None
    if verb == "t":
        return format_value(arg) if isinstance(arg, bool) else None
    if verb == "d":
        return str(arg) if is_int else None
    if verb in "xX" and (is_int or isinstance(arg, str)):
        text = format(arg, "x") if is_int else arg.encode().hex()
        return text.upper() if verb == "X" else text
    if verb == "c":
        return chr(arg) if is_int else None
    if verb in "feEgG" and isinstance(arg, float):
        template_limits.current().check_size(int(precision or 0), "a printf precision")
        spec = ("." + (precision or "6") if verb in "feE" else ("." + precision if precision else "")) + verb
        text = format(arg, spec)
        return re.sub(r"e([+-])(\d)$", r"e\g<1>0\2", text) if verb in "eE" else text
    return None


def printf(form: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs chat templates use: %s %v %d %q %t %x %c %f %e %g, with widths."""
    out: list[str] = []
    used = 0
    end = 0
    for match in _VERB.finditer(form):
        out.append(form[end:match.start()])
        end = match.end()
        flags, width, precision, verb = match.groups()
        if verb == "%":
            out.append("%")
            continue
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[used]
        used += 1
        text = _verb(verb, flags, precision, arg)
        if text is None and arg is None:
            text = f"%!{verb}(<nil>)"
        elif text is None:
            text = f"%!{verb}({go_type(arg)}={format_value(arg)})"
        elif width:
            template_limits.current().check_size(int(width), "a printf width")
            fill = "0" if "0" in flags and "-" not in flags and verb not in "sqvt" else " "
            text = text.ljust(int(width)) if "-" in flags else text.rjust(int(width), fill)
        out.append(text)
    out.append(form[end:])
    if used < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{go_type(a)}={format_value(a)}" for a in args[used:]) + ")")
    return "".join(out)


# --- Ollama's ----------------------------------------------------------------------------------


def current_date(*_: str) -> str:
    """Today as 2006-01-02 (Ollama ignores the format argument)."""
    return datetime.date.today().isoformat()


def yesterday_date(*_: str) -> str:
    return (datetime.date.today() - datetime.timedelta(days=1)).isoformat()


_TS_TYPES = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
             "array": "any[]", "object": "Record<string, any>", "null": "null"}


def typescript_type(value: Any) -> str:
    """A tool parameter's type in TypeScript, as gpt-oss style templates write it."""
    if not isinstance(value, ToolProperty):
        return "any"
    if value.AnyOf:
        return " | ".join(typescript_type(p) for p in value.AnyOf)
    return " | ".join(_TS_TYPES.get(t, "any") for t in value.Type) if value.Type else "any"


# What a converted template calls, under the names the converter writes.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "field": field, "range_items": range_items,
    "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge,
    "len": length, "index": index, "slice": slice_,
    "print": print_, "printf": printf, "println": println, "json": to_json,
    "currentDate": current_date, "yesterdayDate": yesterday_date, "toTypeScriptType": typescript_type,
}
