"""The Responses API's `tools` and `tool_choice`, as the core takes them.

* Function tools become chat's shape: what templates render, and what the core parses calls against.
* A `namespace` (a group of function tools: Codex sends an MCP server's tools as one) is flattened into
  its functions, each shown to the model as `{namespace}__{name}` (the namespace's trailing and the
  name's leading underscores folded into the one delimiter, as Codex writes such names), so two
  namespaces cannot collide. A call of one comes back split again, as OpenAI's function_call items
  carry it: `namespace` and `name`; a past call sent back with its `namespace` is joined the same way.
* Tools that OpenAI runs itself, or that only its own models know how to call (web_search, file_search,
  code_interpreter, image_generation, computer_use_preview, local_shell, mcp, custom, ...), are left out
  rather than refused, and the answer says so (`NOTE_HEADER`, and the daemon's log): an agent offers
  them on every request, and the model can do its work without. Where the request makes one
  required, it is a 400 that names tool_choice: a tool_choice of a hosted type, or "required" with no
  function left to call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest
from .fields import tools
from .openai import checked_tools, chosen_tools

Json = dict[str, Any]

TOOL_CHOICES = '"none", "auto", "required" or {"type": "function", "name": ...}'
NOTE_HEADER = "X-R1-Note"  # what r1 left out of a request, in words, on the answer


@dataclass
class ResponseTools:
    offered: list[Json] | None  # function tools in chat's shape, narrowed by tool_choice
    forcing: bool  # tool_choice makes the model call one of them
    namespaced: dict[str, tuple[str, str]]  # the model's name of a namespace's function -> (namespace, name)
    left_out: list[str]  # "tools[N] (type)" for each tool r1 cannot offer

    def note(self) -> dict[str, str]:
        """The header that says what was left out, if anything was."""
        if not self.left_out:
            return {}
        return {NOTE_HEADER: f"tools left out, which r1 cannot run: {', '.join(self.left_out)}"}


def flat_name(namespace: str, name: str) -> str:
    """The name the model sees for a function of a namespace."""
    return f"{namespace.rstrip('_')}__{name.lstrip('_')}"


def response_tools(body: Json) -> ResponseTools:
    converted: list[Json] = []
    namespaced: dict[str, tuple[str, str]] = {}
    left_out: list[str] = []
    for n, tool in enumerate(tools(body) or []):
        at = f"tools[{n}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            converted.append(function_tool(tool, at))
        elif kind == "namespace":
            for function, plain in namespace_functions(tool, at, left_out):
                converted.append(function)
                namespaced[function["function"]["name"]] = (tool["name"], plain)
        elif isinstance(kind, str) and kind:
            left_out.append(f"{at} ({kind})")
        else:
            raise BadRequest(f"{at} needs a 'type': \"function\", \"namespace\" or one of OpenAI's hosted tools")
    offered, forcing = choose(body, checked_tools(converted or None), left_out)
    return ResponseTools(offered, forcing, namespaced, left_out)


def function_tool(tool: Json, where: str, namespace: str | None = None) -> Json:
    """A Responses function tool ({"type": "function", "name", "parameters"}) in chat's shape."""
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise BadRequest(f"{where} needs a 'name': the function the model may call")
    function = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
    if namespace is not None:
        function["name"] = flat_name(namespace, tool["name"])
    return {"type": "function", "function": function}


def namespace_functions(tool: Json, where: str, left_out: list[str]) -> list[tuple[Json, str]]:
    """A namespace's function tools in chat's shape under their flat names, each with its own name."""
    if not isinstance(tool.get("name"), str) or not tool["name"] or not isinstance(tool.get("tools"), list):
        raise BadRequest(f"{where} (a namespace) must be "
                         "{\"type\": \"namespace\", \"name\", \"description\", \"tools\": [function tools]}")
    functions = []
    for m, member in enumerate(tool["tools"]):
        at = f"{where}.tools[{m}]"
        if not isinstance(member, dict) or not isinstance(member.get("type"), str):
            raise BadRequest(f"{at} must be a tool with a 'type', like {{\"type\": \"function\", \"name\", ...}}")
        if member["type"] != "function":
            left_out.append(f"{at} ({member['type']})")
            continue
        functions.append((function_tool(member, at, tool["name"]), member["name"]))
    return functions


def choose(body: Json, offered: list[Json] | None, left_out: list[str]) -> tuple[list[Json] | None, bool]:
    """The function tools tool_choice leaves, and whether it forces a call; a 400 where it asks for a tool
    r1 left out."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") != "function":
        raise BadRequest(f"tool_choice asks for a tool of type {choice.get('type')!r}, which r1 cannot run: it "
                         f"runs function tools only; tool_choice must be {TOOL_CHOICES}")
    named = choice.get("name") if isinstance(choice, dict) else None
    offered, forcing = chosen_tools(offered, choice, named, TOOL_CHOICES)
    if forcing and not offered and left_out:
        raise BadRequest(f"tool_choice \"required\" leaves the model only tools r1 cannot run ({', '.join(left_out)}); "
                         "offer a function tool, or let tool_choice be \"auto\"")
    return offered, forcing
