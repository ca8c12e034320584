"""The guarded template environment, its limits and the renderer processes, without a model.

Every hostile template of issue 25 is a BackendError (the runner's 400) that names what was wrong and the
setting that bounds it; real templates render exactly as the unguarded environment renders them; Jinja's
`tojson` is Hugging Face's; a renderer that overruns is killed and replaced, and one whose memory runs out
says so and starts afresh.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from r1.daemon.backends.base import BackendError
from r1.daemon.capabilities import template_variables
from r1.daemon.config import Settings
from r1.daemon.metadata import read_metadata
from r1.daemon.template_limits import RenderBudget, TemplateLimits
from r1.daemon.templates import go, template
from r1.daemon.templates.go import to_jinja
from r1.daemon.templates.renderers import GRACE, Renderers
from r1.daemon.templates.sandbox import tojson
from tests.support.tinymodels import (DEFAULT_TEMPLATE, GEMMA_TEMPLATE, THINK_TEMPLATE, TOOL_TEMPLATE,
                                     smollm2_gguf)

FIXTURES = Path(__file__).parent / "fixtures" / "ollama_templates"
LIMITS = TemplateLimits(timeout=2.0, max_loops=1_000_000, max_output=8 * 2**20, max_bytes=128 * 1024)
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <b> & é"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Again?"}]
TOOL_CHAT = [{"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": "", "tool_calls": [
                 {"function": {"name": "get_weather", "arguments": {"unit": "celsius", "city": "Paris"}}}]},
             {"role": "tool", "content": "22 degrees", "tool_name": "get_weather"},
             {"role": "user", "content": "And Berlin?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather <now>",
                                           "parameters": {"type": "object", "required": ["city"], "properties": {
                                               "city": {"type": "string"}, "unit": {"type": "string"}}}}}]
NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ messages[0].content }}"

# Each hostile template, and words its refusal must hold: what was wrong, and which setting bounds it.
HOSTILE = {
    "nested loops": (NESTED, ["1,000,000 loop iterations", "R1_TEMPLATE_MAX_LOOPS"]),
    "'a' * 10**9": ("{{ 'a' * 10**9 }}", ["1,000,000,000 characters with *", "R1_TEMPLATE_MAX_OUTPUT"]),
    "a list times 10**9": ("{{ ([1] * 10**9) | length }}", ["with *", "R1_TEMPLATE_MAX_OUTPUT"]),
    "10 ** 10 ** 9": ("{{ 10 ** 1000000000 }}", ["number of about 1,000,000,000 digits", "**"]),
    "squaring a number": ("{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}"
                          "{% endfor %}", ["digits with *"]),
    "range(20_000_000)": ("{% for i in range(20000000) %}{% endfor %}", ["Range too big", "100000"]),
    "doubling with ~": ("{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                        "{% endfor %}{{ ns.s }}", ["16,777,216 characters with ~", "R1_TEMPLATE_MAX_OUTPUT"]),
    "doubling with +": ("{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
                        "{% endfor %}", ["with +", "R1_TEMPLATE_MAX_OUTPUT"]),
    "doubling in a block set": ("{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s %}{{ ns.s }}"
                                "{{ ns.s }}{% endset %}{% endfor %}", ["with {% set %}", "R1_TEMPLATE_MAX_OUTPUT"]),
    "replace filter": ("{{ ('a' * 1000) | replace('a', 'a' * 1000000) }}", ["with replace"]),
    "replace method": ("{{ ('a' * 1000).replace('a', 'a' * 1000000) }}", ["with replace"]),
    "join filter": ("{{ ('ab' * 1000000) | join('x' * 1000) }}", ["with join"]),
    "join method": ("{{ ('x' * 1000).join('ab' * 1000000) }}", ["with join"]),
    "center filter": ("{{ 'a' | center(10**9) }}", ["the center filter"]),
    "ljust method": ("{{ 'a'.ljust(10**9) }}", ["with ljust"]),
    "indent filter": ("{{ ('a\n' * 10000) | indent(100000) }}", ["with indent"]),
    "format width": ("{{ '{:>1000000000}'.format(1) }}", ["with format"]),
    "% width": ("{{ '%1000000000s' % 'a' }}", ["with a % format"]),
    "% width from an argument": ("{{ '%*s' % (1000000000, 'a') }}", ["with a % format"]),
    "format filter": ("{{ '%1000000000s' | format('a') }}", ["with a % format"]),
    "batch filter": ("{{ [1] | batch(10**9, 'x') | list }}", ["the batch filter"]),
    "tojson indent": ("{{ range(1000) | list | tojson(indent=100000) }}", ["with tojson"]),
    "lipsum": ("{{ lipsum(n=100000, min=100, max=100) }}", ["with lipsum"]),
    "a macro's output doubling": ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% else %}{{ 'a' * 1000 }}"
                                  "{% endif %}{% endmacro %}{{ f(30) }}", ["with a call"]),
    "writing 10 MB": ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",
                      ["wrote more than 8,388,608 characters", "R1_TEMPLATE_MAX_OUTPUT"]),
    "recursion through a macro": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", ["recursed"]),
    "nesting 150 levels": ("{% if true %}" * 150 + "x" + "{% endif %}" * 150, ["nests", "too deeply"]),
    "an expression nested 5000 deep": ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", ["nests", "too deeply"]),
    "include": ("{% include 'secret.txt' %}", ["{% include %}", "stand alone"]),
    "import": ("{% import 'macros.txt' as m %}", ["{% import %}"]),
    "from": ("{% from 'macros.txt' import m %}", ["{% from %}"]),
    "extends": ("{% extends 'base.txt' %}", ["{% extends %}"]),
    "a template of 200 KB": ("x" * 200_000, ["200,000 bytes", "R1_TEMPLATE_MAX_BYTES"]),
    "Go: range over 20,000,000": (to_jinja("{{ range $i := 20000000 }}{{ end }}"),
                                  ["range 20000000", "R1_TEMPLATE_MAX_LOOPS"]),
    "Go: nested ranges": (to_jinja("{{ range 1000 }}{{ range 1000 }}{{ range 1000 }}{{ end }}{{ end }}{{ end }}"),
                          ["R1_TEMPLATE_MAX_LOOPS"]),
    "Go: printf width": (to_jinja('{{ printf "%1000000000s" "a" }}'), ["printf width", "R1_TEMPLATE_MAX_OUTPUT"]),
    "Go: printf precision": (to_jinja('{{ printf "%.100000000f" 1.5 }}'), ["printf precision"]),
}


def render(source: str, messages: list[dict[str, Any]] | None = None, limits: TemplateLimits = LIMITS,
           **fields: Any) -> str:
    return template.render(source, CHAT if messages is None else messages, bos_token="<s>", eos_token="</s>",
                           limits=limits, **fields)


@pytest.mark.unit
@pytest.mark.parametrize("name", list(HOSTILE))
def test_each_hostile_template_is_refused_quickly_naming_the_limit(name: str) -> None:
    source, words = HOSTILE[name]
    started = time.monotonic()
    process = psutil.Process()
    with pytest.raises(BackendError) as refused:
        render(source)
    message = str(refused.value)
    assert all(word in message for word in words), message
    assert time.monotonic() - started < LIMITS.timeout + 1  # refused before building what it asked for
    assert process.memory_info().rss < 2 * 1024**3  # nothing near the gigabytes these would build


def test_the_time_limit_stops_a_loop_that_stays_under_the_loop_limit() -> None:
    limits = TemplateLimits(timeout=0.3, max_loops=10**9, max_output=LIMITS.max_output, max_bytes=LIMITS.max_bytes)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"ran longer than 0.3 s \(R1_TEMPLATE_TIMEOUT\)"):
        render(NESTED, limits=limits)
    assert time.monotonic() - started < 1.0


def unguarded_chat(source: str) -> Any:
    """The environment r1 rendered chat templates in before the limits, with Hugging Face's tojson (the one
    deliberate change, tested apart)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
    return env.from_string(source)


def unguarded_go(source: str) -> Any:
    env = ImmutableSandboxedEnvironment(keep_trailing_newline=True, extensions=["jinja2.ext.loopcontrols"],
                                        finalize=go.show, undefined=StrictUndefined)
    env.globals.update(go.FUNCTIONS)
    return env.from_string(source)


def smollm2_template() -> str:
    path = smollm2_gguf()
    source = read_metadata("gguf", [path]).chat_template
    assert source
    return source


@pytest.mark.unit
@pytest.mark.parametrize("name", ["default", "think", "gemma", "tools", "smollm2"])
def test_real_jinja_templates_render_exactly_as_before(name: str) -> None:
    source = {"default": DEFAULT_TEMPLATE, "think": THINK_TEMPLATE, "gemma": GEMMA_TEMPLATE,
              "tools": TOOL_TEMPLATE}.get(name) or smollm2_template()
    for messages, tools in ((CHAT, None), (TOOL_CHAT, TOOLS)):
        before = unguarded_chat(source).render(messages=messages, tools=tools, add_generation_prompt=True,
                                               bos_token="<s>", eos_token="</s>")
        assert render(source, messages, tools=tools) == before


@pytest.mark.unit
@pytest.mark.parametrize("path", sorted((FIXTURES / "templates").glob("*.gotmpl")) + sorted(
    (FIXTURES / "more").glob("*.gotmpl")), ids=lambda p: p.stem)
def test_ollamas_templates_render_exactly_as_before(path: Path) -> None:
    source = to_jinja(path.read_text())
    mode = go.converted_mode(source)
    assert mode
    for messages, tools in ((CHAT, None), (TOOL_CHAT, TOOLS)):
        before = go.execute(unguarded_go(source), mode, messages, tools=tools)
        assert render(source, messages, tools=tools) == before


@pytest.mark.unit
def test_tojson_is_hugging_faces() -> None:
    """Key order kept, no HTML escaping, non-ASCII kept unless asked, and its options (GLM's templates pass
    ensure_ascii, which Jinja's own filter refuses)."""
    out = render("{{ messages[0] | tojson }}", [{"role": "user", "content": "é <tag> & 'q'", "a": 1}])
    assert out == json.dumps({"role": "user", "content": "é <tag> & 'q'", "a": 1}, ensure_ascii=False)
    assert render("{{ messages[0] | tojson(ensure_ascii=False) }}", [{"z": "é", "a": 1}]) == '{"z": "é", "a": 1}'
    assert render("{{ messages[0] | tojson(ensure_ascii=True) }}", [{"z": "é"}]) == '{"z": "\\u00e9"}'
    assert render("{{ messages[0] | tojson(sort_keys=True) }}", [{"z": 1, "a": 2}]) == '{"a": 2, "z": 1}'
    assert render("{{ messages[0] | tojson(indent=2) }}", [{"z": [1]}]) == '{\n  "z": [\n    1\n  ]\n}'
    assert render("{{ messages[0] | tojson(separators=(',', ':')) }}", [{"z": [1, 2]}]) == '{"z":[1,2]}'


@pytest.mark.unit
def test_hugging_faces_helpers_and_generation_block() -> None:
    assert render("{% generation %}{{ messages[-1].content }}{% endgeneration %}") == "Again?"
    assert render("{{ strftime_now('%Y') }}") == str(datetime.now().year)
    with pytest.raises(BackendError, match="only user and assistant"):
        render("{{ raise_exception('only user and assistant') }}")
    loop_controls = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}"
    assert render(loop_controls) == "system"


@pytest.mark.unit
def test_the_daemon_reads_a_template_without_computing_it() -> None:
    started = time.monotonic()
    assert template_variables("{{ 'a' * 10**9 }}{{ ('a' * 1000) | replace('a', 'a' * 1000000) }}{{ tools }}"
                              "{% if 10 ** 10 ** 9 %}{% endif %}") == {"tools"}
    assert template_variables("{% generation %}{{ suffix }}{% endgeneration %}") == {"suffix"}
    assert template_variables("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}") == frozenset()
    assert time.monotonic() - started < 2


@pytest.mark.unit
def test_limits_come_from_the_settings_and_default_to_them() -> None:
    settings = Settings.from_env({"R1_TEMPLATE_TIMEOUT": "500ms", "R1_TEMPLATE_MAX_LOOPS": "5000",
                                  "R1_TEMPLATE_MAX_OUTPUT": "1MiB", "R1_TEMPLATE_MAX_BYTES": "64KiB",
                                  "R1_HOME": "/tmp/r1-limits-test"})
    limits = TemplateLimits.from_settings(settings)
    assert limits == TemplateLimits(timeout=0.5, max_loops=5000, max_output=2**20, max_bytes=64 * 1024)
    assert TemplateLimits.from_frame(limits.to_frame()) == limits
    assert TemplateLimits.from_frame(None) == TemplateLimits.defaults() == TemplateLimits.from_settings(
        Settings.from_env({"R1_HOME": "/tmp/r1-limits-test"}))


@pytest.mark.unit
def test_a_budget_tells_what_a_render_spent() -> None:
    budget = RenderBudget(LIMITS)
    prompt = render("{% for m in messages %}{{ m.content }}{% endfor %}", CHAT, budget=budget)
    assert budget.steps == len(CHAT) and budget.written == len(prompt)


# --- the renderer processes ------------------------------------------------------------------------


def renderer_pids(renderers: Renderers) -> set[int]:
    return {r.process.pid for r in renderers._idle}


def test_a_renderer_that_overruns_is_killed_and_replaced() -> None:
    limits = TemplateLimits(timeout=0.3, max_loops=10**9, max_output=LIMITS.max_output, max_bytes=LIMITS.max_bytes)
    renderers = Renderers(limits)
    try:
        assert renderers.render("{{ messages[0].content }}", CHAT, bos_token="", eos_token="") == "Be brief."
        first = renderers._idle[-1].process.pid  # the one that answered: it takes the next render too
        # Sorting 8 million numbers is one call: no loop or call of the template's sees the clock meanwhile.
        slow = "{{ ((range(100000) | list) * 80) | sort | sort | sort | sort | sort | sort | length }}"
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"ran longer than 0.3 s \(R1_TEMPLATE_TIMEOUT\)"):
            renderers.render(slow, CHAT, bos_token="", eos_token="")
        assert time.monotonic() - started < limits.timeout + GRACE + 1
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
        assert first not in renderer_pids(renderers)  # a fresh one took its place
        assert renderers.render("{{ messages[1].content }}", CHAT, bos_token="", eos_token="") == "Hi <b> & é"
    finally:
        renderers.close()


def test_a_memory_bomb_past_the_checks_costs_only_its_renderer() -> None:
    # Each string is small, but a million of them take more than the renderer may hold (512 MiB + 16 MB).
    limits = TemplateLimits(timeout=30, max_loops=10**9, max_output=1_000_000, max_bytes=LIMITS.max_bytes)
    renderers = Renderers(limits)
    try:
        renderers.warm()
        [first] = renderer_pids(renderers)
        bomb = "{{ ((range(100000) | list) * 10) | map('string') | map('center', 700) | list | length }}"
        with pytest.raises(BackendError, match="more than the 527 MiB its renderer may"):
            renderers.render(bomb, CHAT, bos_token="", eos_token="")
        assert first not in renderer_pids(renderers)
        assert renderers.render("{{ messages[3].content }}", CHAT, bos_token="", eos_token="") == "Again?"
    finally:
        renderers.close()


@pytest.mark.unit
def test_a_busy_renderer_gets_a_spare_and_no_more() -> None:
    renderers = Renderers(LIMITS)
    try:
        renderers.warm()
        first = renderers._take()
        assert renderers._count == 2 and len(renderers._idle) == 1  # the spare starts while the first is busy
        second = renderers._take()
        assert first.process.pid != second.process.pid and renderers._count == 2 and not renderers._idle
        renderers._give_back(first, spent=False)
        assert renderers._take() is first and renderers._count == 2  # the idle one, not a third
        renderers._give_back(first, spent=False)
        renderers._give_back(second, spent=False)
    finally:
        renderers.close()
