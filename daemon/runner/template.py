"""Chat templates: the Jinja that turns messages into a prompt, as Hugging Face tokenizers run it.

GGUF files and MLX tokenizers carry the model's template as Jinja; `r1 create` TEMPLATE
lines override it. Rendering here, in one place for both backends, keeps prompts identical
across backends and lets the runner see whether the prompt left a `<think>` block open.

Jinja converted from an Ollama Go template (daemon/gotemplate) renders in an environment of
its own, with Go's whitespace rules and the Go helpers, over Ollama's template values.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .. import gotemplate
from ..backends.base import BackendError


def _raise(message: str) -> None:
    raise TemplateError(message)


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> Any:
    if gotemplate.converted_mode(source):
        # Go keeps all whitespace the template does not trim itself, a final newline included;
        # every {{ }} prints as Go's fmt would.
        env = ImmutableSandboxedEnvironment(keep_trailing_newline=True, extensions=["jinja2.ext.loopcontrols"],
                                            finalize=gotemplate.show, undefined=StrictUndefined)
        env.globals.update(gotemplate.FUNCTIONS)
        return env.from_string(source)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


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
) -> str:
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
    try:
        mode = gotemplate.converted_mode(source)
        if mode:
            return gotemplate.execute(_compile(source), mode, messages, tools=tools, think=think, suffix=suffix)
        return _compile(source).render(**context)
    except (TemplateError, gotemplate.ExecError) as exc:
        raise BackendError(f"the chat template failed: {exc}") from exc
