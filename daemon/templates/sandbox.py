"""Jinja environments that charge a render's budget (template_limits.py) for what a template does.

Jinja's immutable sandbox keeps a template from reaching Python's internals, not from running forever
or building a gigabyte string. On top of it:
- every `{% for %}` iterates through a counting guard: the parsed template is rewritten so that its
  loops' iterables pass through the `r1_loop` filter before it is compiled; calls (macros, methods,
  functions) are counted in the sandbox's `call`, and recursive loops' `loop(...)` go through the guard;
- operators and helpers that multiply sizes (`*`, `**`, `+`, `%`, `~`, replace, join, center, indent,
  format, format widths, ljust...) check the size of what they would build before building it;
- `{% include %}`, `{% import %}`, `{% from %}` and `{% extends %}` are refused: a chat template stands alone.
Anything these checks miss is bounded by the renderer process around them (renderer.py).

The chat-template environment is Hugging Face's (transformers' chat template renderer): trim_blocks,
lstrip_blocks, loop controls, `raise_exception`, `strftime_now`, a `{% generation %}` block, and a
`tojson` that keeps key order and non-ASCII text and escapes no HTML.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from jinja2 import Environment, TemplateError, nodes, pass_context
from jinja2.ext import Extension
from jinja2.meta import TrackingCodeGenerator
from jinja2.parser import Parser
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg
from jinja2.visitor import NodeTransformer

from ..template_limits import RenderBudget, TemplateLimitError, current

# Tags that load other templates: a chat template has no others to load.
_LOADING_TAGS: dict[type[nodes.Node], str] = {nodes.Extends: "extends", nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from"}
# A format string's widths and precisions (%10s, %.5f, {:>10}) are numbers written in it: the largest
# number in one bounds what it can build (widths taken from arguments, %*d, are checked apart).
_NUMBER = re.compile(r"\d+")
_DIGITS_PER_BIT = math.log10(2)
_MAX_DIGITS = 4300  # sys.int_info.default_max_str_digits: Python refuses to print a longer number


def _length(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 0


def _checked(budget: RenderBudget, value: Any, what: str) -> Any:
    """A value built by `what`, refused when it is over the size limit (its copies go with it)."""
    budget.check_size(_length(value), what)
    return value


# --- the rewrite: loops and `~` through guards; loading tags refused -------------------------------


class _Guard(NodeTransformer):
    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "r1_loop", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.Tuple(node.nodes, "load", lineno=node.lineno), "r1_concat", [], [], None, None,
                            lineno=node.lineno)

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.Node:
        # {% set x %}...{% endset %}: what the block wrote becomes a value, checked like any other.
        self.generic_visit(node)
        node.filter = nodes.Filter(node.filter, "r1_sized", [], [], None, None, lineno=node.lineno)
        return node

    def generic_visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        tag = _LOADING_TAGS.get(type(node))
        if tag:
            raise TemplateLimitError(f"the chat template uses {{% {tag} %}} (line {node.lineno}), which r1 does not "
                                     "allow: a chat template must stand alone")
        return super().generic_visit(node, *args, **kwargs)


def guard(template: nodes.Template) -> nodes.Template:
    """The parsed template with its loops, `~` and block assignments going through the guards."""
    return _Guard().visit(template)


@pass_context  # a context filter is never folded into a constant when the template compiles
def _loop(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    budget = current()
    for item in iterable:
        budget.step()
        yield item


def _concat(parts: tuple[Any, ...]) -> str:
    texts = [str(p) for p in parts]
    current().check_size(sum(map(len, texts)), "~")
    return "".join(texts)


def _sized(value: Any) -> Any:
    return _checked(current(), value, "{% set %}")


# --- sizes before they are built -------------------------------------------------------------------


def _widest(form: str) -> int:
    """The largest number written in a format string: no width or precision in it is larger."""
    return max(map(int, _NUMBER.findall(form)), default=0)


def _check_percent(budget: RenderBudget, form: str, args: Any) -> None:
    """`form % args`: widths written in the format, or taken from the arguments (`%*d`)."""
    widest = _widest(form)
    if "*" in form:
        values = args if isinstance(args, tuple) else (args,)
        widest = max([widest, *(abs(v) for v in values if isinstance(v, int))])
    budget.check_size(len(form) + widest, "a % format")


def _check_number(digits: float, operator: str) -> None:
    """Multiplying huge numbers costs seconds long before it costs memory: a number is kept as long as
    Python would print it."""
    if digits > _MAX_DIGITS:
        raise TemplateLimitError(f"the chat template would make a number of about {int(digits):,} digits with "
                                 f"{operator}; r1 allows {_MAX_DIGITS:,}, the most Python prints")


def _check_binop(budget: RenderBudget, operator: str, left: Any, right: Any) -> None:
    numbers = all(isinstance(v, int) for v in (left, right))
    if operator == "*":
        if numbers:
            _check_number((left.bit_length() + right.bit_length()) * _DIGITS_PER_BIT, "*")
        elif isinstance(left, int) or isinstance(right, int):
            sequence, times = (left, right) if isinstance(right, int) else (right, left)
            budget.check_size(_length(sequence) * max(times, 0), "*")
    elif operator == "**" and numbers and right > 0:
        _check_number(right * math.log10(max(abs(left), 2)), "**")
    elif operator == "+":
        budget.check_size(_length(left) + _length(right), "+")
    elif operator == "%" and isinstance(left, str):
        _check_percent(budget, left, right)


def _check_method(budget: RenderBudget, method: Any, args: tuple[Any, ...]) -> None:
    """A string method about to run: what it would build."""
    text, name = method.__self__, method.__name__
    if name == "replace" and len(args) >= 2:
        _check_replace(budget, text, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif name == "join" and args:
        parts = args[0]
        if isinstance(parts, (list, tuple, str)):
            sizes = len(parts) if isinstance(parts, str) else sum(map(_length, parts))
            budget.check_size(sizes + len(text) * max(len(parts) - 1, 0), "join")
    elif name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        budget.check_size(args[0], name)
    elif name == "expandtabs":
        size = args[0] if args and isinstance(args[0], int) else 8
        budget.check_size(len(text) + text.count("\t") * size, "expandtabs")
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((_length(v) for v in args[0].values()), default=1)
        budget.check_size(len(text) * longest, "translate")


def _check_replace(budget: RenderBudget, text: Any, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    found = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    budget.check_size(len(text) + found * (len(new) - len(old)), "replace")


def _join(parts: Iterable[Any], separator: Any) -> list[Any]:
    items = list(parts)
    current().check_size(sum(len(str(i)) for i in items) + _length(str(separator)) * max(len(items) - 1, 0), "join")
    return items


# Filters whose first argument is the size of what they build: its keyword name.
_SIZE_ARGUMENT = {"center": "width", "batch": "linecount", "slice": "slices"}


def _guard_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter that checks the size of what it would build, then of what it built."""
    offset = 1 if _PassArg.from_obj(function) is not None else 0  # the context or environment goes first

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.step()
        value, rest = args[offset], args[offset + 1:]

        def arg(index: int, keyword: str, default: Any = None) -> Any:
            return rest[index] if len(rest) > index else kwargs.get(keyword, default)

        if name == "join" and arg(1, "attribute") is None:
            args = (*args[:offset], _join(value, arg(0, "d", "")), *rest)
        elif name == "replace":
            _check_replace(budget, str(value), arg(0, "old"), arg(1, "new"), arg(2, "count"))
        elif name in _SIZE_ARGUMENT and isinstance(arg(0, _SIZE_ARGUMENT[name]), int):
            budget.check_size(arg(0, _SIZE_ARGUMENT[name]), f"the {name} filter")
        elif name == "indent":
            width = arg(0, "width", 4)
            lines = str(value).count("\n") + 1
            budget.check_size(len(str(value)) + lines * (width if isinstance(width, int) else _length(width)), "indent")
        elif name == "format" and isinstance(value, str):
            _check_percent(budget, value, rest)
        return _checked(budget, function(*args, **kwargs), f"the {name} filter")

    return guarded


# --- Hugging Face's helpers ------------------------------------------------------------------------


def raise_exception(message: str) -> None:
    raise TemplateError(message)


def strftime_now(form: str) -> str:
    return datetime.now().strftime(form)


def tojson(value: Any, ensure_ascii: bool = False, indent: int | str | None = None,
           separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """As transformers' chat templates have it: key order kept, non-ASCII kept, no HTML escaping."""
    if indent is None:
        return json.dumps(value, ensure_ascii=ensure_ascii, separators=separators, sort_keys=sort_keys)
    # Indented JSON grows with the indent at every level: written piece by piece, it stops at the limit.
    budget = current()
    encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    pieces, size = [], 0
    for piece in encoder.iterencode(value):
        size += len(piece)
        budget.check_size(size, "tojson")
        pieces.append(piece)
    return "".join(pieces)


class GenerationBlock(Extension):
    """`{% generation %}...{% endgeneration %}` marks the assistant's part for training tools; a prompt
    renders what is inside as it is."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 (Jinja's names)
    from jinja2.utils import generate_lorem_ipsum

    current().check_size(n * max * 12, "lipsum")  # words are at most 12 characters with their space
    return generate_lorem_ipsum(n, html, min, max)


# --- the environments ------------------------------------------------------------------------------


class GuardedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, charging the current render's budget."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters.update(r1_loop=_loop, r1_concat=_concat, r1_sized=_sized)
        self.globals["lipsum"] = _lipsum

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        _check_binop(budget, operator, left, right)
        return _checked(budget, super().call_binop(context, operator, left, right), operator)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's)
        budget = current()
        budget.step()
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's loop(children)
            args = (_loop(__context, args[0]), *args[1:])
        elif isinstance(getattr(__obj, "__self__", None), str):
            _check_method(budget, __obj, args)
        return _checked(budget, super().call(__context, __obj, *args, **kwargs), "a call")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        form = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            budget = current()
            budget.check_size(len(form) + _widest(form), "format")
            return _checked(budget, wrapped(*args, **kwargs), "format")

        return checked


@functools.cache
def reading_environment() -> Environment:
    """For the daemon to read a template (its syntax, the variables it reads) without running any of it: the
    chat tags, and no constant folding, which would compute `'a' * 10**9` while reading."""
    return Environment(extensions=["jinja2.ext.loopcontrols", GenerationBlock], optimized=False)


class _Reader(TrackingCodeGenerator):
    """Jinja's walk for the variables a template reads from its context, folding no constants."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.optimizer = None

    def visit_Output(self, node: nodes.Output, frame: Any) -> None:
        """Nothing: the names it reads were found when its frame was entered, and writing it would compute
        its constant parts."""


def variables_read(template: nodes.Template) -> set[str]:
    """What jinja2.meta.find_undeclared_variables finds, without computing the template's constant
    expressions on the way (which it would do for `'a' * 10**9`)."""
    reader = _Reader(reading_environment())
    reader.visit(template)
    return reader.undeclared_identifiers


def chat_environment() -> GuardedEnvironment:
    """Hugging Face's chat-template environment, guarded."""
    env = GuardedEnvironment(trim_blocks=True, lstrip_blocks=True,
                             extensions=["jinja2.ext.loopcontrols", GenerationBlock])
    env.filters["tojson"] = _guard_filter("tojson", tojson)
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    return env


def go_environment(functions: dict[str, Callable[..., Any]], show: Callable[[Any], str]) -> GuardedEnvironment:
    """For Jinja converted from Ollama's Go templates: Go keeps all whitespace the template does not trim
    itself, a final newline included; every {{ }} prints as Go's fmt would."""
    from jinja2 import StrictUndefined

    env = GuardedEnvironment(keep_trailing_newline=True, extensions=["jinja2.ext.loopcontrols"], finalize=show,
                             undefined=StrictUndefined)
    env.globals.update(functions)
    return env
