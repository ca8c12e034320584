"""Chat templates: the Jinja that turns messages into a prompt, as Hugging Face tokenizers run it.

GGUF files and MLX tokenizers carry the model's template as Jinja; `r1 create` TEMPLATE
lines override it. Rendering here, in one place for both backends, keeps prompts identical
across backends and lets the runner see whether the prompt left a `<think>` block open.

Jinja converted from an Ollama Go template (go/) renders in an environment of
its own, with Go's whitespace rules and the Go helpers, over Ollama's template values.

A template is untrusted code: each render runs within the limits of template_limits.py, in the guarded
environments of sandbox.py, and every way it can fail is a BackendError (a 400) that says why.
Runners call this in their renderer process (renderer.py), never in the process holding the model.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Template, TemplateError

from ..backends.base import BackendError
from ..template_limits import RenderBudget, TemplateLimitError, TemplateLimits, charged_to
from .go import FUNCTIONS, ExecError, converted_mode, execute, show
from .sandbox import chat_environment, go_environment, guard


class OutOfMemory(BackendError):
    """A render ran out of the memory its process may use; the process should start afresh."""


@functools.cache
def _environments() -> tuple[Any, Any]:
    return chat_environment(), go_environment(FUNCTIONS, show)


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> Template:
    """The template compiled from its guarded syntax tree; a failure is not kept, so compiling charges
    every render that tries."""
    chat, go = _environments()
    env = go if converted_mode(source) else chat
    try:
        return env.from_string(guard(env.parse(source)))
    except (SyntaxError, RecursionError) as exc:  # Python's own limits on the code Jinja writes
        raise TemplateLimitError(f"the chat template nests its blocks or expressions too deeply to compile "
                                 f"({type(exc).__name__}: {exc})") from exc


class _Counted:
    """A compiled template whose output is counted as it streams (R1_TEMPLATE_MAX_OUTPUT)."""

    def __init__(self, template: Template, budget: RenderBudget) -> None:
        self.template = template
        self.budget = budget

    def render(self, **context: Any) -> str:
        pieces = []
        for piece in self.template.generate(**context):
            self.budget.write(len(piece))
            pieces.append(piece)
        self.budget.check_time()
        return "".join(pieces)


def render(
    source: str,
    messages: list[dict[str, Any]],
    *,
    bos_token: str,
    eos_token: str,
    tools: list[Any] | None = None,
    think: bool | None = None,
    effort: str | None = None,
    suffix: str | None = None,
    limits: TemplateLimits | None = None,
    budget: RenderBudget | None = None,
) -> str:
    """The prompt; BackendError (a 400) says why not. It renders within `limits` (default: the settings'
    defaults), charging `budget` when one is given (it then tells what the render spent)."""
    context: dict[str, Any] = {
        "messages": messages,
        "add_generation_prompt": True,
        "bos_token": bos_token,
        "eos_token": eos_token,
    }
    if tools:
        context["tools"] = tools
    if think is not None:
        context["enable_thinking"] = think  # Qwen3-style templates read it
    if effort is not None:
        context["reasoning_effort"] = effort  # gpt-oss-style templates read a level
    if suffix is not None:
        context["suffix"] = suffix  # what follows the gap, for templates that fill in the middle
    budget = budget or RenderBudget(limits or TemplateLimits.defaults())
    limits = budget.limits
    try:
        limits.check_source(source)
        with charged_to(budget):
            template = _Counted(_compile(source), budget)
            mode = converted_mode(source)
            if mode:
                return execute(template, mode, messages, tools=tools, think=think, suffix=suffix)
            return template.render(**context)
    except TemplateLimitError as exc:
        raise BackendError(str(exc)) from exc
    except RecursionError as exc:
        raise BackendError("the chat template recursed deeper than Python allows (a macro that calls itself "
                           "without end?)") from exc
    except MemoryError as exc:
        raise OutOfMemory(f"the chat template used more than the {limits.memory // 2**20:,} MiB its renderer may "
                          "(512 MiB and 16 times R1_TEMPLATE_MAX_OUTPUT)") from exc
    except (TemplateError, ExecError) as exc:
        raise BackendError(f"the chat template failed: {exc}") from exc
    except Exception as exc:  # the template's own doing: a TypeError, an OverflowError of Jinja's range...
        raise BackendError(f"the chat template failed: {type(exc).__name__}: {exc}") from exc
