"""Hypothesis strategies for request bodies, for tests/test_fuzz.py.

A route's body is either one of its valid bodies (VALID, every field a dialect reads filled in) with a few
values swapped for odd ones at any depth, or an object of the field names its code reads with odd values.
The words come from the code itself (the string constants of the handler's module and the daemon modules
it imports from: field names, types, roles, option names), so a new field or route is fuzzed unasked.
Odd values: lists and objects where strings are expected, huge and negative numbers, long strings, and
nesting around the depth limit."""

from __future__ import annotations

import ast
import copy
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from r1.daemon.api.http import MAX_JSON_DEPTH

DAEMON = Path(__file__).resolve().parents[2] / "daemon"
MODELS = ["tiny", "tooled"]  # the fuzzed app's store holds these: tooled's template renders tools
READ_WITH = {"get", "required_str", "get_str", "get_bool", "an_object", "pop", "setdefault"}
Json = dict[str, Any]

# --- the words a route's code knows -------------------------------------------------------------------


def module_file(module: str) -> Path:
    return DAEMON.joinpath(*module.split(".")[2:]).with_suffix(".py")  # r1.daemon.api.openai -> api/openai.py


def readers(path: Path) -> set[Path]:
    """A module and the daemon modules it imports from (one level): where a route's fields are read."""
    found = {path}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            target = base.joinpath(*(node.module or "").split("."))
            found |= {f for f in (target.with_suffix(".py"), target / "__init__.py") if f.is_file()}
    return found


def is_word(node: ast.AST) -> bool:
    """A short identifier-like string constant (no URLs: a fuzzed remote must not dial out)."""
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isascii() and \
        2 <= len(node.value) <= 40 and node.value.replace("_", "").replace(".", "").isalnum()


def words_of(paths: set[Path]) -> tuple[list[str], list[str]]:
    """The field names `paths` read (body.get("x"), required_str(body, "x"), value["x"], "x" in value, tables'
    keys), and every word in them (types, roles, option names...)."""
    fields, words = set(), set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if is_word(node):
                words.add(node.value)
            elif isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in READ_WITH:
                    fields |= {arg.value for arg in node.args if is_word(arg)}
            elif isinstance(node, ast.Subscript) and is_word(node.slice):
                fields.add(node.slice.value)
            elif isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In) and is_word(node.left):
                fields.add(node.left.value)
            elif isinstance(node, ast.Dict):  # tables of fields: CHAT_FIELDS, REFUSED...
                fields |= {key.value for key in node.keys if key is not None and is_word(key)}
    return sorted(fields), sorted(words)


def route_words(handler_module: str) -> tuple[list[str], list[str]]:
    return words_of(readers(module_file(handler_module)))


def dialect_error(path: str, body: Any) -> str | None:
    """The error's message when `body` is one in the shape `path`'s dialect uses (http.error_body), else None."""
    if path.startswith("/v1/messages"):
        ok = body.get("type") == "error" and isinstance(body.get("error"), dict)
        return body["error"].get("message") if ok else None
    if path.startswith("/v1/"):
        return body["error"].get("message") if isinstance(body.get("error"), dict) else None
    return body.get("error") if isinstance(body.get("error"), str) else None


# --- valid bodies, every field filled in ------------------------------------------------------------

WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
OPTIONS = {"temperature": 0.5, "top_k": 5, "top_p": 0.9, "num_predict": 4, "stop": ["\n\n"], "seed": 1,
           "num_ctx": 128, "repeat_last_n": 16}
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                          "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
OPENAI_CHAT = [{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
               {"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                   "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
ANTHROPIC = {"model": "tooled", "system": [{"type": "text", "text": "Be brief."}], "messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}, {
        "type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "text", "text": "sunny"}]}, {"type": "text", "text": "And so?"}]}],
    "tools": [{"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}, "temperature": 0.5, "top_k": 5,
    "top_p": 0.9, "stop_sequences": ["\n\n"], "thinking": {"type": "disabled"}, "output_config": {"effort": "low"},
    "stream": False}
RESPONSES = {"model": "tooled", "instructions": "Be brief.", "input": [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
    {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
    {"type": "function_call_output", "call_id": "c1", "output": "sunny"}],
    "tools": [{"type": "function", **WEATHER}], "tool_choice": "auto", "reasoning": {"effort": "none"},
    "text": {"format": {"type": "text"}}, "max_output_tokens": 8, "temperature": 0.5, "top_p": 0.9, "store": True,
    "metadata": {"app": "fuzz"}, "parallel_tool_calls": True, "include": ["reasoning.encrypted_content"],
    "stream": False}


def valid_bodies(gguf: Path, folder: Path) -> dict[str, list[Json]]:
    """Bodies each route answers with success in the fuzzed app (`gguf`: a model file to import, `folder`:
    an Ollama store to import from)."""
    openai_chat = {"model": "tooled", "messages": OPENAI_CHAT, "tools": [{"type": "function", "function": WEATHER}],
                   "tool_choice": "auto", "temperature": 0.5, "top_p": 0.9, "max_tokens": 4, "stop": ["\n\n"],
                   "seed": 1, "reasoning_effort": "none", "logprobs": True, "top_logprobs": 2, "n": 1,
                   "keep_alive": "5m", "options": {"top_k": 5}, "stream": False}
    return {
        "/api/chat": [{"model": "tooled", "messages": CHAT, "tools": [{"type": "function", "function": WEATHER}],
                       "options": OPTIONS, "format": SCHEMA, "keep_alive": "5m", "think": False, "logprobs": True,
                       "top_logprobs": 2, "stream": False}],
        "/api/generate": [{"model": "tiny", "prompt": "Hi", "system": "Be brief.", "options": OPTIONS, "format": "json",
                           "keep_alive": 0, "context": [1, 2, 3], "raw": False, "stream": True}],
        "/api/embed": [{"model": "tiny", "input": ["a", "b"], "truncate": True, "options": {"num_ctx": 64},
                        "keep_alive": "1m"}],
        "/api/embeddings": [{"model": "tiny", "prompt": "a", "options": {"num_ctx": 64}}],
        "/api/show": [{"model": "tiny", "verbose": True}],
        "/api/copy": [{"source": "tiny", "destination": "tiny-copy"}],
        "/api/create": [{"model": "made", "from": "tiny", "system": "Be brief.", "license": "MIT",
                         "parameters": {"temperature": 0.1, "stop": ["x"]},
                         "messages": [{"role": "user", "content": "Hi"}], "stream": False}],
        "/api/pull": [{"model": "tiny", "stream": False}],
        "/api/remotes": [{"name": "up", "urls": ["http://127.0.0.1:9/v1"], "dialect": "openai", "api_key": "k",
                          "headers": {"X-Team": "a"}, "ca_file": str(gguf)}],  # port 9: nothing answers there
        "/api/import": [{"path": str(gguf), "model": "imported", "link": True, "stream": False},
                        {"from": "ollama", "dir": str(folder), "all": True, "dry_run": True, "stream": False}],
        "/v1/chat/completions": [openai_chat, {"model": "tiny", "messages": OPENAI_CHAT[1:2], "stream": True,
                                               "stream_options": {"include_usage": True}, "response_format": {
                                                   "type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}}],
        "/v1/completions": [{"model": "tiny", "prompt": "Hi", "max_tokens": 4, "temperature": 0.5, "stop": "\n",
                             "logprobs": 2, "suffix": None, "echo": False, "best_of": 1, "stream": False}],
        "/v1/embeddings": [{"model": "tiny", "input": ["a", "b"], "encoding_format": "base64"}],
        "/v1/messages": [{**ANTHROPIC, "max_tokens": 8}],
        "/v1/messages/count_tokens": [ANTHROPIC],
        "/v1/responses": [RESPONSES, {"model": "tiny", "input": "Hi", "text": {"format": {
            "type": "json_schema", "name": "a", "schema": SCHEMA}}, "stream": True}],
    }


# --- odd values, and bodies made of them --------------------------------------------------------------

numbers = (st.integers(-(2**70), 2**70) | st.sampled_from([0, 1, -1, -2, 2**31, 2**63, 10**300, -(10**400)])
           | st.floats(allow_nan=False, allow_infinity=False))


def nested(depth: int) -> Any:
    """A value `depth` arrays and objects deep."""
    value: Any = "deep"
    for n in range(depth):
        value = [value] if n % 2 else {"content": value}
    return value


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], odds: int) -> st.SearchStrategy[Any]:
    """`odd` once in `odds` draws, `usual` otherwise."""
    return st.integers(1, odds).flatmap(lambda n: odd if n == 1 else usual)


def odd_values(fields: list[str], words: list[str]) -> st.SearchStrategy[Any]:
    keys = st.sampled_from(fields) | st.text(max_size=8)
    strings = st.sampled_from(words + MODELS) | st.text(max_size=30) | st.just("/" + "x" * 5000)
    leaves = st.none() | st.booleans() | numbers | strings
    tree = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                        max_leaves=12)
    return leaves | mostly(tree, st.integers(MAX_JSON_DEPTH - 3, MAX_JSON_DEPTH + 3).map(nested), 50)


def containers(value: Any) -> list[Any]:
    """Every object and array in `value`, itself first."""
    found = [value] if isinstance(value, (dict, list)) else []
    for child in (value.values() if isinstance(value, dict) else value if isinstance(value, list) else []):
        found += containers(child)
    return found


# What the sweep puts in every place of every valid body: a list or an object where something else is expected,
# a number no field can hold, a long string, nothing.
ODD = ([1], {"odd": [1]}, 10**30, "/" + "x" * 5000, None)  # the string: a name, a path, too long for either


def swept(body: Json) -> Iterator[tuple[str, Json]]:
    """`body` with each of its values, at any depth, replaced by each of ODD in turn: (where, the body)."""
    for where, parent, key in places(body):
        for odd in ODD:
            original = parent[key]
            parent[key] = odd
            yield where, copy.deepcopy(body)
            parent[key] = original


def places(value: Any, where: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, container, key) of every value in `value`, parents before their children."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in list(items):
        at = f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]"
        yield at, value, key
        yield from places(child, at)


def mutated(data: st.DataObject, rng: random.Random, body: Json, fields: list[str],
            odd: st.SearchStrategy[Any]) -> Json:
    """A copy of `body` with one to three of its values, at any depth, swapped for odd ones; now and then an
    odd value under one of the route's field names added to one of its objects instead. Places are picked by
    `rng`, evenly: hypothesis's own draws lean to the first of a list (the model, every time)."""
    body = copy.deepcopy(body)
    for _ in range(rng.randint(1, 3)):
        spots = list(places(body))
        if spots and rng.random() < 0.75:
            _, parent, key = rng.choice(spots)
            parent[key] = data.draw(odd, label="odd")
            continue
        target = rng.choice(containers(body))
        if isinstance(target, dict):
            target[rng.choice(fields)] = data.draw(odd, label="odd")
        else:
            target.append(data.draw(odd, label="odd"))
    return body


def random_body(fields: list[str], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Json]:
    """An object of the route's field names with odd values, mostly naming a model in the store."""
    return st.builds(lambda model, extra: {"model": model, **extra}, mostly(st.sampled_from(MODELS), odd, 10),
                     st.dictionaries(st.sampled_from(fields) | st.text(max_size=8), odd, max_size=8))


def body_for(data: st.DataObject, rng: random.Random, valid: list[Json], fields: list[str],
             odd: st.SearchStrategy[Any]) -> Json:
    """A body to fuzz a route with: a valid one mutated (three times in four, where the route has one) or one
    made of its field names."""
    if valid and rng.random() < 0.75:
        return mutated(data, rng, rng.choice(valid), fields, odd)
    return data.draw(random_body(fields, odd), label="random")
