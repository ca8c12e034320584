"""What the chat-template limits cost a normal chat, and how far real prompts stay below them.

    python -m benchmarks.template_limits [--runs 20]

Three ways to render the same prompt, each `--runs` times after a warm-up (templates compiled), medians:
- before: the unguarded in-process render r1 used until the limits (Jinja's immutable sandbox, Hugging
  Face's options), as the model thread ran it;
- guarded: template.render in this process, within the default limits (the sandbox's checks alone);
- renderer: through a runner's renderer process (renderers.py), what a runner does now: the checks plus
  the round trip over its pipes.
For two prompts: a short chat (a system prompt and 3 turns) through SmolLM2's own template (the GGUF the
tests use), and a Claude-Code-sized one: 24 tools and about 30,000 tokens of history (120,000 characters,
tool calls and results among them) through a tools template in the style of Qwen's and Hermes'. Then what
each render spent against the limits, how long a renderer takes to start, and how long a template of
R1_TEMPLATE_MAX_BYTES takes to compile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from r1.daemon.metadata import read_metadata
from r1.daemon.template_limits import RenderBudget, TemplateLimits
from r1.daemon.templates import template
from r1.daemon.templates.renderers import Renderer, Renderers
from tests.support.tinymodels import smollm2_gguf

TOOLS_TEMPLATE = """\
{%- if tools %}
<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools

You may call one or more of the functions below. Their signatures are inside <tools></tools>:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>

To call one, write a JSON object with its name and arguments inside <tool_call></tool_call>.<|im_end|>
{%- elif messages[0].role == 'system' %}
<|im_start|>system
{{ messages[0].content }}<|im_end|>
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role in ('user', 'system') %}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{%- elif message.role == 'assistant' %}
<|im_start|>assistant
{%- if message.content %}
{{ message.content }}
{%- endif %}
{%- for call in message.tool_calls or [] %}
<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
<|im_start|>user
{%- endif %}
<tool_response>
{{ message.content }}
</tool_response>
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>{% endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""

WORDS = [
    "the", "file", "function", "returns", "value", "when", "test", "error", "build", "change",
    "module", "request", "model", "runner", "template", "daemon", "prompt", "token", "slot", "cache",
    "store", "blob", "manifest", "import", "pull", "create", "show", "list", "copy", "remove",
]


def text(n_chars: int, seed: int) -> str:
    words, size, i = [], 0, seed
    while size < n_chars:
        word = WORDS[(i * 7919) % len(WORDS)]
        words.append(word)
        size += len(word) + 1
        i += 1
    return " ".join(words)[:n_chars]


def short_chat() -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
            {"role": "assistant", "content": "Rome."},
            {"role": "user", "content": "And of Spain?"}]


def tools(count: int = 24) -> list[dict[str, Any]]:
    def tool(i: int) -> dict[str, Any]:
        properties = {f"param_{j}": {"type": ("string", "integer", "boolean", "array")[j % 4],
                                     "description": text(120, i * 10 + j)} for j in range(5)}
        return {"type": "function", "function": {"name": f"tool_{i}", "description": text(700, i),
                                                 "parameters": {"type": "object", "properties": properties,
                                                                "required": ["param_0", "param_1"]}}}
    return [tool(i) for i in range(count)]


def long_history(chars: int = 120_000) -> list[dict[str, Any]]:
    """About 30,000 tokens: a long system prompt, then turns of a request, a tool call, its result, an answer."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": text(12_000, 1)}]
    turn = 0
    while sum(len(m.get("content") or "") for m in messages) < chars:
        turn += 1
        call = {"function": {"name": f"tool_{turn % 24}", "arguments": {"param_0": text(60, turn), "param_1": turn}}}
        messages += [{"role": "user", "content": text(400, turn)},
                     {"role": "assistant", "content": "", "tool_calls": [call]},
                     {"role": "tool", "content": text(1_500, turn + 1), "tool_name": f"tool_{turn % 24}"},
                     {"role": "assistant", "content": text(300, turn + 2)}]
    return messages + [{"role": "user", "content": "Go on."}]


def unguarded(source: str) -> Callable[..., str]:
    """r1's render before the limits: compiled once, rendered in the calling thread, nothing counted."""
    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda form: datetime.now().strftime(form)
    compiled = env.from_string(source)
    return lambda **context: compiled.render(**context)


def median_ms(render: Callable[[], str], runs: int) -> float:
    render()  # compiled, cached, warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        render()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def compare(name: str, source: str, messages: list[dict[str, Any]], tool_list: list[Any] | None,
            renderers: Renderers, runs: int) -> None:
    context = {"messages": messages, "tools": tool_list, "add_generation_prompt": True, "bos_token": "",
               "eos_token": "<|im_end|>"}
    old = unguarded(source)
    fields = {"bos_token": "", "eos_token": "<|im_end|>", "tools": tool_list}
    before = median_ms(lambda: old(**context), runs)
    guarded = median_ms(lambda: template.render(source, messages, **fields), runs)
    through = median_ms(lambda: renderers.render(source, messages, **fields), runs)
    budget = RenderBudget(renderers.limits)
    prompt = template.render(source, messages, budget=budget, **fields)
    limits = renderers.limits
    print(f"\n{name}: {len(messages)} messages, {len(json.dumps(messages)):,} characters of JSON, "
          f"{len(tool_list or [])} tools, a prompt of {len(prompt):,} characters")
    print(f"  {'before (unguarded, in-process)':<34} {before:8.3f} ms")
    print(f"  {'guarded, in-process':<34} {guarded:8.3f} ms   (+{guarded - before:.3f} ms)")
    print(f"  {'guarded, through a renderer':<34} {through:8.3f} ms   (+{through - before:.3f} ms)")
    print(f"  spent: {budget.steps:,} loop iterations and calls of {limits.max_loops:,} "
          f"({limits.max_loops / max(budget.steps, 1):,.0f}x below); {budget.written:,} characters of "
          f"{limits.max_output:,} ({limits.max_output / max(budget.written, 1):,.0f}x below); "
          f"{through:.1f} ms of {limits.timeout * 1000:,.0f} ({limits.timeout * 1000 / through:,.0f}x below)")


def startup(limits: TemplateLimits, runs: int) -> None:
    times = []
    for _ in range(min(runs, 5)):
        started = time.perf_counter()
        renderer = Renderer(limits)
        renderer.ask({"source": "{{ messages }}", "messages": [], "bos_token": "", "eos_token": ""}, 30)
        times.append(time.perf_counter() - started)
        renderer.stop()
    print(f"\na renderer's start and first render: median {statistics.median(times) * 1000:.0f} ms")


def largest_allowed(limits: TemplateLimits) -> None:
    """A template of about R1_TEMPLATE_MAX_BYTES, of statements like real templates', compiled cold."""
    block = ("{%- for message in messages %}{%- if message.role == 'user' and message.content %}\n<|im_start|>user\n"
             "{{ message.content | trim }}<|im_end|>{%- elif message.role == 'tool' %}<tool_response>"
             "{{ message.content }}</tool_response>{%- endif %}{%- endfor %}\n")
    source = block * (limits.max_bytes // len(block))
    started = time.perf_counter()
    template.render(source, short_chat(), bos_token="", eos_token="", limits=limits)
    print(f"a template of {len(source.encode()):,} bytes (R1_TEMPLATE_MAX_BYTES is {limits.max_bytes:,}): "
          f"compiled and rendered in {(time.perf_counter() - started) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{Path(__file__).stem}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    smollm2 = smollm2_gguf()
    smollm2_template = read_metadata("gguf", [smollm2]).chat_template
    assert smollm2_template
    limits = TemplateLimits.defaults()
    renderers = Renderers(limits)
    try:
        compare("short chat, SmolLM2's template", smollm2_template, short_chat(), None, renderers, args.runs)
        compare("Claude-Code-sized, tools template", TOOLS_TEMPLATE, long_history(), tools(), renderers, args.runs)
    finally:
        renderers.close()
    startup(limits, args.runs)
    largest_allowed(limits)


if __name__ == "__main__":
    main()
