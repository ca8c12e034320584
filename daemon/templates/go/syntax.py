"""Go's text/template syntax, read the way Go reads it: a lexer and a parser that turn a
template into nodes (text, actions, if/with/range with their pipelines, break, continue).

`{{- ` and ` -}}` trim every space, tab, carriage return and newline next to them, as Go's
lexer does while it reads; the text nodes come out already trimmed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import BadRequest

SPACE = " \t\r\n"
KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
NESTED = {"define", "template", "block"}  # templates calling templates: r1 converts one template
# The functions a template may call: Go's builtins and the ones Ollama adds (template/template.go).
FUNCTIONS = {"and", "or", "not", "len", "index", "slice", "eq", "ne", "lt", "le", "gt", "ge",
             "print", "printf", "println", "json", "currentDate", "yesterdayDate", "toTypeScriptType"}
UNSUPPORTED_FUNCTIONS = {"html", "js", "urlquery", "call"}  # Go builtins no chat template needs


class GoTemplateError(BadRequest):
    """An Ollama Go template r1 cannot convert; the message names the construct and its line."""


def fail(source: str, pos: int, message: str) -> GoTemplateError:
    line = source.count("\n", 0, pos) + 1
    return GoTemplateError(f"the Go template cannot be converted: {message} (line {line})")


# --- nodes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Field:  # .A.B
    names: tuple[str, ...]


@dataclass(frozen=True)
class Variable:  # $ or $x, with fields after it: $.Messages, $m.Role
    name: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dot:
    pass


@dataclass(frozen=True)
class Nil:
    pass


@dataclass(frozen=True)
class Literal:  # a bool, number or string constant
    value: bool | int | float | str


@dataclass(frozen=True)
class Function:  # a function name, the first word of a command
    name: str


@dataclass(frozen=True)
class Chain:  # (pipeline).Field
    node: Arg
    names: tuple[str, ...]


@dataclass(frozen=True)
class Pipe:
    decl: tuple[str, ...]  # the variables it declares or assigns
    assign: bool  # `$x = ...` rather than `$x := ...`
    cmds: tuple[tuple[Arg, ...], ...]  # commands joined by `|`; each a list of operands
    pos: int


Arg = Field | Variable | Dot | Nil | Literal | Function | Chain | Pipe


@dataclass(frozen=True)
class Action:
    pipe: Pipe


@dataclass(frozen=True)
class Branch:  # if, with or range
    kind: str
    pipe: Pipe
    body: tuple[Node, ...]
    orelse: tuple[Node, ...] | None
    chained: bool = False  # an `{{ else if }}` (or `else with`) of the branch around it


@dataclass(frozen=True)
class Loop:  # break or continue
    kind: str


Node = Text | Action | Branch | Loop


# --- lexer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # text, left, right, space, keyword, ident, field, variable, dot, nil, bool, number, string, ...
    value: str | int | float | bool | None
    pos: int


_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F_]+(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?|0[oO][0-7_]+|0[bB][01_]+|"
                     r"(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9_]+)?)i?")
_WORD = re.compile(r"\w*")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}


def _word_at(source: str, pos: int) -> str:
    """The word characters from pos on, maybe none (the pattern matches the empty word too)."""
    match = _WORD.match(source, pos)
    return match.group() if match else ""


class Lexer:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens: list[Token] = []

    def error(self, pos: int, message: str) -> GoTemplateError:
        return fail(self.source, pos, message)

    def at_right(self, pos: int) -> tuple[bool, bool]:
        """Whether a right delimiter starts at pos, and whether it has a trim marker (" -}}")."""
        s = self.source
        if pos + 1 < len(s) and s[pos] in SPACE and s[pos + 1] == "-" and s.startswith("}}", pos + 2):
            return True, True
        return s.startswith("}}", pos), False

    def skip_space(self, pos: int) -> int:
        while pos < len(self.source) and self.source[pos] in SPACE:
            pos += 1
        return pos

    def run(self) -> list[Token]:
        s, pos = self.source, 0
        while True:
            start = s.find("{{", pos)
            if start < 0:
                if pos < len(s):
                    self.tokens.append(Token("text", s[pos:], pos))
                break
            inner = start + 2
            text = s[pos:start]
            if s.startswith("-", inner) and inner + 1 < len(s) and s[inner + 1] in SPACE:
                text = text.rstrip(SPACE)
                inner += 2
            if text:
                self.tokens.append(Token("text", text, pos))
            if s.startswith("/*", inner):
                pos = self.comment(start, inner)
            else:
                self.tokens.append(Token("left", "{{", start))
                pos = self.action(inner)
        self.tokens.append(Token("eof", None, len(s)))
        return self.tokens

    def comment(self, start: int, inner: int) -> int:
        end = self.source.find("*/", inner + 2)
        if end < 0:
            raise self.error(start, "unclosed comment")
        delim, trim = self.at_right(end + 2)
        if not delim:
            raise self.error(start, "comment ends before closing delimiter")
        pos = end + 2 + (2 if trim else 0) + 2
        return self.skip_space(pos) if trim else pos

    def action(self, pos: int) -> int:
        s, depth = self.source, 0
        while True:
            delim, trim = self.at_right(pos)
            if delim:
                if depth:
                    raise self.error(pos, "unclosed left paren")
                self.tokens.append(Token("right", "}}", pos))
                pos += (2 if trim else 0) + 2
                return self.skip_space(pos) if trim else pos
            if pos >= len(s):
                raise self.error(pos, "unclosed action")
            c = s[pos]
            if c in SPACE:
                end = self.skip_space(pos)
                self.tokens.append(Token("space", s[pos:end], pos))
                # " -}}" starts with a space: leave it for the right delimiter.
                pos = end - 1 if s.startswith("-}}", end) else end
            elif c == "=":
                self.tokens.append(Token("assign", "=", pos))
                pos += 1
            elif c == ":":
                if not s.startswith(":=", pos):
                    raise self.error(pos, "expected :=")
                self.tokens.append(Token("declare", ":=", pos))
                pos += 2
            elif c in "|,":
                self.tokens.append(Token("pipe" if c == "|" else "comma", c, pos))
                pos += 1
            elif c == "(":
                depth += 1
                self.tokens.append(Token("lparen", c, pos))
                pos += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    raise self.error(pos, "unexpected right paren")
                self.tokens.append(Token("rparen", c, pos))
                pos += 1
            elif c == '"':
                pos = self.quoted(pos)
            elif c == "`":
                end = s.find("`", pos + 1)
                if end < 0:
                    raise self.error(pos, "unterminated raw quoted string")
                self.tokens.append(Token("string", s[pos + 1:end].replace("\r", ""), pos))
                pos = end + 1
            elif c == "'":
                pos = self.char(pos)
            elif c == "$" or (c == "." and not s[pos + 1:pos + 2].isdigit()):
                word = _word_at(s, pos + 1)
                kind = "variable" if c == "$" else ("field" if word else "dot")
                self.tokens.append(Token(kind, c + word, pos))
                pos = self.terminated(pos + 1 + len(word))
            elif c in "+-." or c.isdigit():
                pos = self.number(pos)
            elif c == "_" or c.isalnum():
                word = _word_at(s, pos)
                if word in ("true", "false"):
                    self.tokens.append(Token("bool", word == "true", pos))
                elif word == "nil":
                    self.tokens.append(Token("nil", None, pos))
                else:
                    self.tokens.append(Token("keyword" if word in KEYWORDS else "ident", word, pos))
                pos = self.terminated(pos + len(word))
            else:
                raise self.error(pos, f"unexpected {c!r} in an action")

    def terminated(self, pos: int) -> int:
        """Go wants a word to end at a space, `.`, `,`, `|`, `:`, `(`, `)` or the delimiter."""
        s = self.source
        if pos < len(s) and s[pos] not in SPACE + ".,|:()" and not self.at_right(pos)[0]:
            raise self.error(pos, f"bad character {s[pos]!r}")
        return pos

    def number(self, pos: int) -> int:
        match = _NUMBER.match(self.source, pos)
        text = match.group() if match else ""
        end = pos + len(text)
        if not text.lstrip("+-") or (end < len(self.source) and (self.source[end].isalnum() or self.source[end] == "_")):
            raise self.error(pos, f"bad number syntax: {self.source[pos:end + 1]!r}")
        if text.endswith("i"):
            raise self.error(pos, f"complex number {text} is not supported")
        digits = text.replace("_", "")
        try:
            if re.fullmatch(r"[+-]?0[0-7]+", digits):  # Go's legacy octal
                value: int | float = int(digits, 8)
            elif re.search(r"[.eEpP]", digits) and not re.match(r"[+-]?0[xX][0-9a-fA-F]+$", digits):
                value = float.fromhex(digits) if "x" in digits.lower() else float(digits)
            else:
                value = int(digits, 0)
        except ValueError:
            raise self.error(pos, f"bad number syntax: {text!r}") from None
        self.tokens.append(Token("number", value, pos))
        return end

    def escape(self, pos: int, quote: str) -> tuple[str, int]:
        """The character an escape at pos (just after the backslash) stands for, and where it ends."""
        s = self.source
        c = s[pos:pos + 1]
        if c in _ESCAPES and (c != '"' or quote == '"'):
            return _ESCAPES[c], pos + 1
        if c == "'" and quote == "'":
            return "'", pos + 1
        size = {"x": 2, "u": 4, "U": 8}.get(c, 0)
        digits = s[pos + 1:pos + 1 + size]
        if size and re.fullmatch(f"[0-9a-fA-F]{{{size}}}", digits):
            return chr(int(digits, 16)), pos + 1 + size
        if re.fullmatch(r"[0-7]{3}", s[pos:pos + 3]):
            return chr(int(s[pos:pos + 3], 8)), pos + 3
        raise self.error(pos, "invalid escape in a quoted string")

    def quoted(self, start: int) -> int:
        s, pos = self.source, start + 1
        out: list[str] = []
        while True:
            c = s[pos:pos + 1]
            if c in ("", "\n"):
                raise self.error(start, "unterminated quoted string")
            if c == '"':
                self.tokens.append(Token("string", "".join(out), start))
                return pos + 1
            if c == "\\":
                char, pos = self.escape(pos + 1, '"')
                out.append(char)
            else:
                out.append(c)
                pos += 1

    def char(self, start: int) -> int:
        s = self.source
        if s[start + 1:start + 2] == "\\":
            char, pos = self.escape(start + 2, "'")
        else:
            char, pos = s[start + 1:start + 2], start + 2
        if not char or s[pos:pos + 1] != "'":
            raise self.error(start, "unterminated character constant")
        self.tokens.append(Token("number", ord(char), start))
        return pos + 1


# --- parser ------------------------------------------------------------------------------------


class Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = Lexer(source).run()
        self.i = 0
        self.ranges = 0  # how many ranges enclose the current point: break and continue need one

    def error(self, pos: int, message: str) -> GoTemplateError:
        return fail(self.source, pos, message)

    def next(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next_non_space(self) -> Token:
        token = self.next()
        while token.kind == "space":
            token = self.next()
        return token

    def peek_non_space(self) -> Token:
        saved = self.i
        token = self.next_non_space()
        self.i = saved
        return token

    def expect_right(self, context: str) -> None:
        token = self.next_non_space()
        if token.kind != "right":
            raise self.error(token.pos, f"unexpected {describe(token)} in {context}")

    def parse(self) -> tuple[Node, ...]:
        nodes, stop = self.items()
        if stop.kind != "eof":
            raise self.error(stop.pos, f"unexpected {{{{ {stop.value} }}}}")
        return nodes

    def items(self) -> tuple[tuple[Node, ...], Token]:
        """Nodes up to an `{{ end }}`, an `{{ else` or the end of the template (returned as the stop)."""
        nodes: list[Node] = []
        while True:
            token = self.next()
            if token.kind == "eof":
                return tuple(nodes), token
            if token.kind == "text":
                nodes.append(Text(str(token.value)))
                continue
            word = self.peek_non_space()
            if word.kind != "keyword":
                nodes.append(Action(self.pipeline("command", "right")))
                continue
            self.next_non_space()
            if word.value == "end":
                self.expect_right("end")
                return tuple(nodes), word
            if word.value == "else":
                return tuple(nodes), word
            if word.value in NESTED:
                raise self.error(word.pos, f"{{{{ {word.value} }}}} is not supported: r1 converts a single template, "
                                           "not templates that define or call other templates")
            if word.value in ("break", "continue"):
                if not self.ranges:
                    raise self.error(word.pos, f"{{{{ {word.value} }}}} outside {{{{ range }}}}")
                self.expect_right(str(word.value))
                nodes.append(Loop(str(word.value)))
                continue
            nodes.append(self.branch(str(word.value), word.pos))

    def branch(self, kind: str, pos: int, chained: bool = False) -> Branch:
        pipe = self.pipeline(kind, "right")
        self.ranges += kind == "range"
        body, stop = self.items()
        self.ranges -= kind == "range"
        orelse: tuple[Node, ...] | None = None
        if stop.kind == "eof":
            raise self.error(pos, f"{{{{ {kind} }}}} has no {{{{ end }}}}")
        if stop.value == "else":
            after = self.peek_non_space()
            if after.kind == "keyword" and after.value in ("if", "with") and after.value == kind:
                self.next_non_space()
                # {{ else if b }} is {{ else }}{{ if b }}...{{ end }}: the inner branch takes the {{ end }}.
                orelse = (self.branch(kind, after.pos, chained=True),)
            else:
                self.expect_right("else")
                orelse, stop = self.items()
                if stop.kind == "eof" or stop.value != "end":
                    raise self.error(stop.pos, f"expected {{{{ end }}}} after the {{{{ else }}}} of {{{{ {kind} }}}}")
        return Branch(kind, pipe, body, orelse, chained)

    def pipeline(self, context: str, end: str) -> Pipe:
        start = self.peek_non_space().pos
        decl: list[str] = []
        assign = False
        while (token := self.peek_non_space()).kind == "variable":
            saved = self.i
            self.next_non_space()
            after = self.peek_non_space()
            if after.kind in ("declare", "assign"):
                self.next_non_space()
                assign = after.kind == "assign"
                decl.append(str(token.value))
                break
            if after.kind == "comma" and context == "range" and not decl:
                self.next_non_space()
                decl.append(str(token.value))
                if self.peek_non_space().kind != "variable":
                    raise self.error(after.pos, "range can only initialize variables")
                continue
            if after.kind == "comma" or decl:
                raise self.error(after.pos, f"too many declarations in {context}" if after.kind == "comma"
                                 else "range can only initialize variables")
            self.i = saved  # a variable used as a value, not declared
            break
        cmds: list[tuple[Arg, ...]] = []
        while True:
            token = self.next_non_space()
            if token.kind == end:
                if not cmds:
                    raise self.error(token.pos, f"missing value for {context}")
                return Pipe(tuple(decl), assign, tuple(cmds), start)
            if token.kind in ("ident", "dot", "nil", "variable", "field", "bool", "number", "string", "lparen"):
                self.i -= 1
                cmds.append(self.command())
            else:
                raise self.error(token.pos, f"unexpected {describe(token)} in {context}")

    def command(self) -> tuple[Arg, ...]:
        args: list[Arg] = []
        while True:
            while self.peek().kind == "space":
                self.next()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            token = self.next()
            if token.kind == "space":
                continue
            if token.kind in ("right", "rparen"):
                self.i -= 1
            elif token.kind == "pipe":
                if self.peek_non_space().kind in ("right", "rparen"):
                    raise self.error(token.pos, "missing command after |")
            else:
                raise self.error(token.pos, f"unexpected {describe(token)} in operand")
            if not args:
                raise self.error(token.pos, "empty command")
            return tuple(args)

    def operand(self) -> Arg | None:
        node = self.term()
        if node is None or self.peek().kind != "field":
            return node
        start = self.peek().pos
        names: list[str] = []
        while self.peek().kind == "field":
            names.append(str(self.next().value)[1:])
        if isinstance(node, Field):
            return Field(node.names + tuple(names))
        if isinstance(node, Variable):
            return Variable(node.name, node.names + tuple(names))
        if isinstance(node, (Literal, Nil, Dot)):
            raise self.error(start, "unexpected . after a constant")
        return Chain(node, tuple(names))

    def term(self) -> Arg | None:
        token = self.next_non_space()
        kind, value = token.kind, token.value
        if kind == "ident":
            if value in UNSUPPORTED_FUNCTIONS:
                raise self.error(token.pos, f"the function {value} is not supported in chat templates")
            if value not in FUNCTIONS:
                raise self.error(token.pos, f'function "{value}" not defined')
            return Function(str(value))
        if kind == "dot":
            return Dot()
        if kind == "nil":
            return Nil()
        if kind == "variable":
            return Variable(str(value))
        if kind == "field":
            return Field((str(value)[1:],))
        if kind in ("bool", "number", "string"):
            return Literal(value)  # type: ignore[arg-type]
        if kind == "lparen":
            return self.pipeline("parenthesized pipeline", "rparen")
        self.i -= 1  # not an operand: the command ends here
        return None


def describe(token: Token) -> str:
    if token.kind in ("right", "eof"):
        return "end of the action" if token.kind == "right" else "end of the template"
    return f"{token.value!r}" if token.kind in ("string", "number") else str(token.value)


def parse(source: str) -> tuple[Node, ...]:
    """The nodes of a Go template; GoTemplateError says what does not parse, and where."""
    return Parser(source).parse()
