"""Go template nodes written out as Jinja that renders the same text.

Text is written as it is (Go already trimmed it); values go through helper functions with
Go's rules (funcs.py), and `{{ x }}` prints through Go's fmt (the environment's finalize).
Go variables become slots of one Jinja namespace `v`, one slot per declaration, resolved
here by Go's scoping, so `$x = ...` inside a range changes the variable outside it as in Go.

Ollama executes a template in one of two ways (template/template.go), and the header says which:
- "messages": the template reads .Messages; it renders once over the whole chat.
- "legacy": a template of .System/.Prompt/.Response runs once per turn; the last run uses a
  copy cut after `{{ .Response }}`, so the prompt ends where the model's answer begins.
"""

from __future__ import annotations

import dataclasses
import math
from itertools import count

from .syntax import Action, Arg, Branch, Chain, Dot, Field, Function, Literal, Loop, Nil, Node, Pipe, Text, Variable, fail, parse

HEADER = "{# r1: converted from an Ollama Go template ("
# Arguments each function takes (at least, at most) where Go would refuse another count.
_ARITY = {"not": (1, 1), "len": (1, 1), "json": (1, 1), "toTypeScriptType": (1, 1), "ne": (2, 2),
          "lt": (2, 2), "le": (2, 2), "gt": (2, 2), "ge": (2, 2), "and": (1, None), "or": (1, None),
          "eq": (1, None), "index": (1, None), "slice": (1, None), "printf": (1, None)}


def jinja_string(text: str) -> str:
    """A Jinja string literal for any text."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r") + "'"


def jinja_text(text: str) -> str:
    """Template text as Jinja data: a `{` that could open a Jinja tag, and a carriage return
    (which Jinja would turn into a newline), are written as expressions."""
    out = []
    for i, char in enumerate(text):
        if char == "{" and text[i + 1:i + 2] in ("", "{", "%", "#"):
            out.append("{{ '{' }}")
        elif char == "\r":
            out.append("{{ '\\r' }}")
        else:
            out.append(char)
    return "".join(out)


def identifiers(nodes: tuple[Node, ...]) -> set[str]:
    """Ollama's Template.Vars: the field and variable names a template mentions, lowercased."""
    names: set[str] = set()

    def pipe(p: Pipe) -> None:
        for cmd in p.cmds:
            for a in cmd:
                if isinstance(a, Field):
                    names.update(a.names)
                elif isinstance(a, Variable):
                    names.update((a.name, *a.names))
                elif isinstance(a, Pipe):
                    pipe(a)

    def walk(ns: tuple[Node, ...]) -> None:
        for n in ns:
            if isinstance(n, Action):
                pipe(n.pipe)
            elif isinstance(n, Branch):
                pipe(n.pipe)
                walk(n.body)
                walk(n.orelse or ())

    walk(nodes)
    return {name.lower() for name in names}


def cut_after_response(nodes: tuple[Node, ...]) -> tuple[Node, ...]:
    """Ollama's deleteNode: everything after the first `.Response` field, in reading order, goes.
    Conditions are not read (so `{{ if .Response }}` cuts nothing), and a command that loses all
    its operands takes its whole action with it."""
    cut = False

    def hit(n: object) -> bool:
        nonlocal cut
        if isinstance(n, Field) and "Response" in n.names:
            cut = True
            return False
        return cut

    def walk_list(ns: tuple[Node, ...]) -> tuple[Node, ...]:
        return tuple(kept for kept in map(walk, ns) if kept is not None)

    def walk(n: Node) -> Node | None:
        if hit(n):
            return None
        if isinstance(n, Branch):
            body = walk_list(n.body)
            # Go panics on an else after the cut (a nil list); an empty else renders the same prefix.
            orelse = None if n.orelse is None or cut else walk_list(n.orelse)
            return dataclasses.replace(n, body=body, orelse=orelse)
        if isinstance(n, Action):
            pipe = walk_pipe(n.pipe)
            return None if pipe is None else Action(pipe)
        return n

    def walk_pipe(p: Pipe) -> Pipe | None:
        if hit(p):
            return None
        cmds = []
        for cmd in p.cmds:
            args = tuple(kept for kept in map(walk_arg, cmd) if kept is not None)
            if not args:
                return None
            cmds.append(args)
        return dataclasses.replace(p, cmds=tuple(cmds))

    def walk_arg(a: Arg) -> Arg | None:
        if hit(a):
            return None
        return walk_pipe(a) if isinstance(a, Pipe) else a

    return walk_list(nodes)


class Emitter:
    def __init__(self, source: str) -> None:
        self.source = source
        self.numbers = count(1)
        self.scopes: list[dict[str, str]] = [{"$": "root"}]  # Go variable -> its Jinja expression

    def slot(self, name: str) -> str:
        return f"v.{name.lstrip('$_') or 'var'}{next(self.numbers)}"

    def lookup(self, name: str, pos: int) -> str:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        raise fail(self.source, pos, f"undefined variable {name}")

    def nodes(self, nodes: tuple[Node, ...], dot: str) -> str:
        self.scopes.append({})
        try:
            return "".join(self.node(n, dot) for n in nodes)
        finally:
            self.scopes.pop()

    def node(self, node: Node, dot: str) -> str:
        if isinstance(node, Text):
            return jinja_text(node.text)
        if isinstance(node, Loop):
            return f"{{% {node.kind} %}}"
        if isinstance(node, Action):
            value = self.pipe(node.pipe, dot)
            return self.bind(node.pipe, [value]) if node.pipe.decl else f"{{{{ {value} }}}}"
        self.scopes.append({})  # the variables a branch's pipeline declares end with the branch
        try:
            return self.range(node, dot) if node.kind == "range" else self.condition(node, dot)
        finally:
            self.scopes.pop()

    def bind(self, pipe: Pipe, values: list[str]) -> str:
        """`{% set %}` for the variables a pipeline declares (new slots) or assigns (theirs)."""
        out = []
        for name, value in zip(pipe.decl, values):
            target = self.lookup(name, pipe.pos) if pipe.assign else self.slot(name)
            out.append(f"{{% set {target} = {value} %}}")
            if not pipe.assign:
                self.scopes[-1][name] = target
        return "".join(out)

    def condition(self, node: Branch, dot: str) -> str:
        """if and with; a chain of `else if`s without declarations becomes elif."""
        value = self.pipe(node.pipe, dot)
        prefix = ""
        subject = value
        if node.pipe.decl:
            prefix = self.bind(node.pipe, [value])
            subject = self.lookup(node.pipe.decl[0], node.pipe.pos)
        elif node.kind == "with":
            subject = self.slot("dot")
            prefix = f"{{% set {subject} = {value} %}}"
        out = f"{prefix}{{% if {subject} %}}" + self.nodes(node.body, subject if node.kind == "with" else dot)
        orelse = node.orelse
        while orelse is not None and len(orelse) == 1 and isinstance(orelse[0], Branch) and orelse[0].chained \
                and orelse[0].kind == "if" and not orelse[0].pipe.decl:
            out += f"{{% elif {self.pipe(orelse[0].pipe, dot)} %}}" + self.nodes(orelse[0].body, dot)
            orelse = orelse[0].orelse
        if orelse is not None:
            out += "{% else %}" + self.nodes(orelse, dot)
        return out + "{% endif %}"

    def range(self, node: Branch, dot: str) -> str:
        n = next(self.numbers)
        key, item = f"key{n}", f"item{n}"
        source = self.pipe(node.pipe, dot)
        # One variable takes the element; two take the index (or key) and the element.
        sets = self.bind(node.pipe, [item] if len(node.pipe.decl) == 1 else [key, item])
        out = f"{{% for {key}, {item} in range_items({source}) %}}{sets}" + self.nodes(node.body, item)
        if node.orelse is not None:
            out += "{% else %}" + self.nodes(node.orelse, dot)
        return out + "{% endfor %}"

    # --- expressions ---

    def pipe(self, pipe: Pipe, dot: str) -> str:
        value: str | None = None
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value, pipe.pos)  # the value so far is the next command's last argument
        assert value is not None  # the parser refuses empty pipelines
        return value

    def command(self, args: tuple[Arg, ...], dot: str, final: str | None, pos: int) -> str:
        first = args[0]
        if isinstance(first, Function):
            params = [self.arg(a, dot, pos) for a in args[1:]] + ([final] if final is not None else [])
            return self.call(first.name, params, pos)
        if len(args) > 1 or final is not None:
            raise fail(self.source, pos, f"{self.describe(first)} is given arguments, but only functions take them")
        if isinstance(first, Nil):
            raise fail(self.source, pos, "nil is not a command")
        return self.arg(first, dot, pos)

    def arg(self, a: Arg, dot: str, pos: int) -> str:
        if isinstance(a, Field):
            return self.fields(dot, a.names)
        if isinstance(a, Variable):
            return self.fields(self.lookup(a.name, pos), a.names)
        if isinstance(a, Dot):
            return dot
        if isinstance(a, Nil):
            return "none"
        if isinstance(a, Literal):
            return self.literal(a.value, pos)
        if isinstance(a, Function):
            return self.call(a.name, [], pos)
        if isinstance(a, Chain):
            return self.fields(self.arg(a.node, dot, pos), a.names)
        if a.decl:
            raise fail(self.source, a.pos, "declaring a variable inside ( ) is not supported")
        return f"({self.pipe(a, dot)})"

    @staticmethod
    def fields(base: str, names: tuple[str, ...]) -> str:
        return f"field({base}, {', '.join(map(jinja_string, names))})" if names else base

    def literal(self, value: bool | int | float | str, pos: int) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return jinja_string(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise fail(self.source, pos, "number out of range")
        return f"({value!r})"

    def call(self, name: str, params: list[str], pos: int) -> str:
        least, most = _ARITY.get(name, (0, None))
        if len(params) < least or (most is not None and len(params) > most):
            raise fail(self.source, pos, f"wrong number of arguments for {name}: {len(params)}")
        if name in ("and", "or"):  # Go's and/or stop at the deciding operand and return it, as Jinja's do
            return "(" + f" {name} ".join(params) + ")"
        if name == "not":
            return f"(not {params[0]})"
        return f"{name}({', '.join(params)})"

    @staticmethod
    def describe(a: Arg) -> str:
        if isinstance(a, Field):
            return "." + ".".join(a.names)
        if isinstance(a, Variable):
            return ".".join((a.name, *a.names))
        return "a constant" if isinstance(a, (Literal, Dot)) else "a ( ) pipeline"


def convert(source: str) -> str:
    """The Jinja for a Go template; GoTemplateError names what cannot be converted, and where."""
    nodes = parse(source)
    names = identifiers(nodes)
    if "messages" not in names and "response" not in names:
        # Ollama's Parse appends {{ .Response }} to such templates, so turns carry the answers.
        nodes += (Action(Pipe((), False, ((Field(("Response",)),),), len(source))),)
    mode = "messages" if "messages" in names else "legacy"
    uses = ", ".join(sorted(name for name in names if not name.startswith("$")))
    emitter = Emitter(source)
    if mode == "messages":
        body = emitter.nodes(nodes, "root")
    else:
        body = ("{% if cut %}" + emitter.nodes(cut_after_response(nodes), "root") + "{% else %}"
                + emitter.nodes(nodes, "root") + "{% endif %}")
    return f"{HEADER}{mode}; uses: {uses}) #}}{{% set v = namespace() %}}{body}"
