"""Go values as a converted template sees them, and Go's two ways of writing one out: fmt's
`%v` (what `{{ x }}` prints) and encoding/json (`json x`, and the String() methods Ollama
gives its tool types, which write JSON).

Ollama's data is Go structs (fixed fields: asking for another is an error), maps (a missing
key is the zero value; JSON and `range` go through the keys sorted) and slices. Numbers read
from JSON are float64 in Go, so they are floats here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, ClassVar


class ExecError(Exception):
    """The template failed while rendering, where Go's Execute fails (an unknown struct field,
    a comparison of a string with a number...)."""


# --- the value model ---------------------------------------------------------------------------


class GoMap(dict):
    """map[string]X: missing keys read as `zero`; JSON and range go through the keys sorted.
    A nil map (None given) is empty and marshals as null."""

    go_type = "map[string]interface {}"
    stringer = False  # has a String() method writing its JSON

    def __init__(self, values: dict[str, Any] | None) -> None:
        super().__init__(values or {})
        self.nil = values is None

    def zero(self) -> Any:
        return None


class ArgsMap(GoMap):
    """Ollama's templateArgs: a tool call's arguments; prints as JSON ("{}" when nil)."""

    go_type = "template.templateArgs"
    stringer = True


class PropertiesMap(GoMap):
    """Ollama's templateProperties: a tool's parameters by name; prints as JSON ("{}" when nil)."""

    go_type = "template.templateProperties"
    stringer = True

    def zero(self) -> Any:
        return ToolProperty()


class OrderedMap(dict):
    """api.ToolPropertiesMap (nested properties): JSON in the order the client sent them."""

    go_type = "*api.ToolPropertiesMap"


class GoSlice(list):
    """A slice; a nil one prints as [] and marshals as null."""

    go_type = "[]interface {}"

    def __init__(self, items: list[Any] | None) -> None:
        super().__init__(items or [])
        self.nil = items is None


class ToolsSlice(GoSlice):
    """Ollama's templateTools: prints as its JSON ("null" when the request had no tools)."""

    go_type = "template.templateTools"


class PropertyType(list):
    """api.PropertyType: one type prints and marshals as a string, several as a list."""

    go_type = "api.PropertyType"


@dataclass
class Struct:
    """A Go struct. `tags` maps fields to (json name, omitempty) where the Go type has json tags;
    `stringer` types have a String() method that writes their JSON."""

    go_type: ClassVar[str]
    tags: ClassVar[dict[str, tuple[str, bool]]] = {}
    stringer: ClassVar[bool] = False


@dataclass
class ToolCallFunction(Struct):
    go_type = "template.templateToolCallFunction"
    Index: int = 0
    Name: str = ""
    Arguments: ArgsMap = field(default_factory=lambda: ArgsMap(None))


@dataclass
class ToolCall(Struct):
    go_type = "template.templateToolCall"
    ID: str = ""
    Function: ToolCallFunction = field(default_factory=ToolCallFunction)


@dataclass
class Message(Struct):
    go_type = "*template.templateMessage"
    Role: str = ""
    Content: str = ""
    Thinking: str = ""
    Images: GoSlice = field(default_factory=lambda: GoSlice(None))
    ToolCalls: GoSlice = field(default_factory=lambda: GoSlice(None))
    ToolName: str = ""
    ToolCallID: str = ""


@dataclass
class ToolProperty(Struct):
    go_type = "api.ToolProperty"
    tags = {"AnyOf": ("anyOf", True), "Type": ("type", True), "Items": ("items", True),
            "Description": ("description", True), "Enum": ("enum", True), "Properties": ("properties", True),
            "Required": ("required", True)}
    AnyOf: GoSlice = field(default_factory=lambda: GoSlice(None))
    Type: PropertyType = field(default_factory=PropertyType)
    Items: Any = None
    Description: str = ""
    Enum: GoSlice = field(default_factory=lambda: GoSlice(None))
    Properties: OrderedMap | None = None
    Required: GoSlice = field(default_factory=lambda: GoSlice(None))


@dataclass
class ToolParameters(Struct):
    go_type = "template.templateToolFunctionParameters"
    tags = {"Type": ("type", False), "Defs": ("$defs", True), "Items": ("items", True),
            "Required": ("required", True), "Properties": ("properties", False)}
    stringer = True  # Ollama's PR 18391: printed as JSON, as before v0.14
    Type: str = ""
    Defs: Any = None
    Items: Any = None
    Required: GoSlice = field(default_factory=lambda: GoSlice(None))
    Properties: PropertiesMap = field(default_factory=lambda: PropertiesMap(None))


@dataclass
class ToolFunction(Struct):
    go_type = "template.templateToolFunction"
    tags = {"Name": ("name", False), "Description": ("description", False), "Parameters": ("parameters", False)}
    stringer = True  # see ToolParameters
    Name: str = ""
    Description: str = ""
    Parameters: ToolParameters = field(default_factory=ToolParameters)


@dataclass
class Tool(Struct):
    go_type = "template.templateTool"
    tags = {"Type": ("type", False), "Items": ("items", True), "Function": ("function", False)}
    stringer = True
    Type: str = ""
    Items: Any = None
    Function: ToolFunction = field(default_factory=ToolFunction)


def go_type(value: Any) -> str:
    """Go's name for the type of a value, for error messages."""
    if value is None:
        return "<nil>"
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float64"), (str, "string")):
        if isinstance(value, kind):
            return name
    return getattr(value, "go_type", "[]interface {}" if isinstance(value, list) else type(value).__name__)


def is_stringer(value: Any) -> bool:
    return isinstance(value, (ToolsSlice, PropertyType)) or getattr(value, "stringer", False)


def field_of(value: Any, name: str) -> Any:
    """`.Name` of a value: a struct's field, a map's entry; nothing of nothing."""
    if value is None:
        return None
    if isinstance(value, Struct):
        if name not in value.__dataclass_fields__:
            raise ExecError(f"can't evaluate field {name} in type {value.go_type}")
        return getattr(value, name)
    if isinstance(value, dict):
        return value.get(name, value.zero() if isinstance(value, GoMap) else None)
    raise ExecError(f"can't evaluate field {name} in type {go_type(value)}")


def from_json(value: Any) -> Any:
    """A value decoded from JSON into Go's `any`: objects are maps, arrays slices, numbers float64."""
    if isinstance(value, dict):
        return GoMap({str(k): from_json(v) for k, v in value.items()})
    if isinstance(value, list):
        return GoSlice([from_json(v) for v in value])
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# --- numbers -----------------------------------------------------------------------------------


def _shortest(number: float) -> tuple[str, int]:
    """The fewest digits that read back as `number` (> 0), and where the point goes:
    number = 0.DIGITS x 10**point. Python's repr and Go's strconv find the same digits."""
    sign, digits, exponent = Decimal(repr(number)).as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)
    stripped = text.lstrip("0")
    point -= len(text) - len(stripped)
    return stripped.rstrip("0") or "0", point


def _fixed(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def _exponent(digits: str, point: int) -> str:
    exp = point - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def format_float(number: float, json: bool = False) -> str:
    """float64 as fmt's %v writes it (exponent from 1e+06 up and below 1e-04), or as
    encoding/json does (exponent from 1e+21 up and below 1e-6)."""
    if number != number or number in (float("inf"), float("-inf")):
        if json:
            raise ExecError(f"json: unsupported value: {number}")
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(number)]
    if number == 0:
        return "-0" if math.copysign(1, number) < 0 else "0"
    sign = "-" if number < 0 else ""
    digits, point = _shortest(abs(number))
    exp = point - 1
    if json:
        if abs(number) < 1e-6 or abs(number) >= 1e21:
            return sign + _exponent(digits, point).replace("e-0", "e-")
        return sign + _fixed(digits, point)
    return sign + (_exponent(digits, point) if exp < -4 or exp >= 6 else _fixed(digits, point))


# --- fmt ---------------------------------------------------------------------------------------


def show(value: Any) -> str:
    """What `{{ x }}` prints: Go's fmt.Fprint of the value; nothing at all is "<no value>"."""
    return "<no value>" if value is None else format_value(value)


def format_value(value: Any) -> str:
    """fmt's %v of a value, inside other values too (where nothing is "<nil>")."""
    if value is None:
        return "<nil>"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, PropertyType):
        return value[0] if len(value) == 1 else "[" + " ".join(value) + "]" if value else ""
    if is_stringer(value):
        return "{}" if isinstance(value, GoMap) and value.nil else to_json(value)  # their String() on nil
    if isinstance(value, Struct):
        return "{" + " ".join(format_value(getattr(value, f.name)) for f in fields(value)) + "}"
    if isinstance(value, dict):
        items = value.items() if isinstance(value, OrderedMap) else sorted(value.items())
        return "map[" + " ".join(f"{format_value(k)}:{format_value(v)}" for k, v in items) + "]"
    if isinstance(value, list):
        return "[" + " ".join(format_value(v) for v in value) + "]"
    return str(value)


# --- encoding/json -----------------------------------------------------------------------------

_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
                 "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_string(text: str) -> str:
    """A JSON string as Go writes it: compact, with <, > and & escaped for HTML."""
    out = ['"']
    for char in text:
        if char in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[char])
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        elif "\ud800" <= char <= "\udfff":  # not UTF-8: Go writes the replacement character
            out.append("\ufffd")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _empty(value: Any) -> bool:
    """What omitempty leaves out of Ollama's types: false, 0, "", nil, and empty slices (their
    maps sit behind pointers or in `any` fields, left out only when nil)."""
    return value is None or (isinstance(value, (int, float, str, list)) and not value)


def to_json(value: Any) -> str:
    """encoding/json's Marshal of a value."""
    if value is None or getattr(value, "nil", False):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value, json=True)
    if isinstance(value, str):
        return json_string(value)
    if isinstance(value, PropertyType) and len(value) == 1:
        return json_string(value[0])
    if isinstance(value, Struct):
        parts = []
        for f in fields(value):
            name, omitempty = value.tags.get(f.name, (f.name, False))
            item = getattr(value, f.name)
            if not (omitempty and _empty(item)):
                parts.append(f"{json_string(name)}:{to_json(item)}")
        return "{" + ",".join(parts) + "}"
    if isinstance(value, dict):
        items = value.items() if isinstance(value, OrderedMap) else sorted(value.items())
        return "{" + ",".join(f"{json_string(str(k))}:{to_json(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    raise ExecError(f"json: unsupported type: {go_type(value)}")
