"""Ollama's Go templates converted to Jinja: the library templates render exactly what Ollama
renders (expectations written by reading each template, and Ollama's own test outputs), Go's
rules one by one, what cannot be converted is a 400 naming it, and Go TEMPLATEs and `template`
fields work through the API and the real runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.support.answers import prompt_tokens
from tests.support.daemons import Daemon
from tests.support.inprocess import InProcess
from r1.daemon.backends.base import BackendError
from r1.daemon.templates.go import GoTemplateError, as_jinja, is_go_template, to_jinja
from r1.daemon.templates.template import render
from tests.support.tinymodels import DEFAULT_TEMPLATE, GEMMA_TEMPLATE, THINK_TEMPLATE, TOOL_TEMPLATE

FIXTURES = Path(__file__).parent / "fixtures" / "ollama_templates"
TOP = sorted(p.name.removesuffix(".gotmpl") for p in (FIXTURES / "templates").glob("*.gotmpl"))

CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Germany?"},
]
TOOL_CHAT = [
    {"role": "system", "content": "You are a weather bot."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"unit": "celsius", "city": "Paris"}}}]},
    {"role": "tool", "content": "22 degrees and sunny", "tool_name": "get_weather"},
    {"role": "assistant", "content": "It is 22 degrees and sunny in Paris."},
    {"role": "user", "content": "And in Berlin?"},
]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city (temperature & sky)",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
        "city": {"type": "string", "description": "City name"}}}}}]


SYSTEM_ONLY = CHAT[:1]
# Mentioning .Messages makes a template render once over the chat; templates that do not are run
# Ollama's legacy way, once per turn (tested on their own below).
ONCE = "{{- range .Messages }}{{ end }}"


def go(source: str, messages: list[dict[str, Any]] | None = None, **values: Any) -> str:
    """A Go template converted, then rendered the way the runner renders it."""
    return render(to_jinja(source), CHAT if messages is None else messages, bos_token="<s>", eos_token="</s>", **values)


# --- the library templates ---------------------------------------------------------------------


@pytest.mark.unit
def test_there_are_twenty_library_templates_with_expectations() -> None:
    assert len(TOP) == 20
    assert sorted(p.stem for p in (FIXTURES / "expected").glob("*.txt")) == TOP
    assert sum(".Tools" in (FIXTURES / "templates" / f"{n}.gotmpl").read_text() for n in TOP) == 6


@pytest.mark.unit
@pytest.mark.parametrize("name", TOP)
def test_library_template_renders_what_ollama_renders(name: str) -> None:
    """A two-turn chat with a system prompt, and a tool call where the template renders tools."""
    source = (FIXTURES / "templates" / f"{name}.gotmpl").read_text()
    with_tools = ".Tools" in source
    prompt = go(source, TOOL_CHAT if with_tools else CHAT, tools=TOOLS if with_tools else None)
    assert prompt == (FIXTURES / "expected" / f"{name}.txt").read_text()


_HELLO = [{"role": "user", "content": "Hello, how are you?"},
          {"role": "assistant", "content": "I'm doing great. How can I help you today?"},
          {"role": "user", "content": "I'd like to show off how chat templating works!"}]
OLLAMA_CHATS = {  # the chats of Ollama's TestTemplate
    "user": _HELLO[:1],
    "user-assistant-user": _HELLO,
    "system-user-assistant-user": [{"role": "system", "content": "You are a helpful assistant."}, *_HELLO],
}
OLLAMA_CASES = [(folder, path.name.removesuffix(".gotmpl"), chat)
                for folder in ("templates", "more", "legacy")
                for path in sorted((FIXTURES / folder).glob("*.gotmpl"))
                if (FIXTURES / "ollama_outputs" / path.name.removesuffix(".gotmpl")).is_dir()
                for chat in OLLAMA_CHATS]


@pytest.mark.unit
@pytest.mark.parametrize(("folder", "name", "chat"), OLLAMA_CASES)
def test_ollamas_own_outputs(folder: str, name: str, chat: str) -> None:
    """Ollama's template tests, with its messages: current templates and their legacy forms."""
    prompt = go((FIXTURES / folder / f"{name}.gotmpl").read_text(), OLLAMA_CHATS[chat])
    if name in ("chatqa", "llama2-chat", "mistral-instruct", "openchat", "vicuna") and prompt.endswith(" "):
        prompt = prompt[:-1]  # as Ollama's test does for these
    assert prompt == (FIXTURES / "ollama_outputs" / name / chat).read_text()


@pytest.mark.unit
def test_there_are_ollama_outputs_for_current_and_legacy_templates() -> None:
    assert len(OLLAMA_CASES) == 3 * (15 + 5 + 18)


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(p.stem for p in (FIXTURES / "ollama_outputs" / "tools").glob("*.out")))
def test_ollamas_own_tool_outputs(name: str) -> None:
    folder = "templates" if (FIXTURES / "templates" / f"{name}.gotmpl").exists() else "more"
    messages = json.loads((FIXTURES / "ollama_outputs" / "tools" / "messages.json").read_text())
    tools = json.loads((FIXTURES / "ollama_outputs" / "tools" / "tools.json").read_text())
    prompt = go((FIXTURES / folder / f"{name}.gotmpl").read_text(), messages, tools=tools)
    assert prompt == (FIXTURES / "ollama_outputs" / "tools" / f"{name}.out").read_text()


@pytest.mark.unit
def test_a_deepseek_r1_style_template() -> None:
    source = ('{{- if .System }}{{ .System }}{{ end }}\n{{- range $i, $_ := .Messages }}\n'
              '{{- $last := eq (len (slice $.Messages $i)) 1}}\n'
              '{{- if eq .Role "user" }}<｜User｜>{{ .Content }}\n'
              '{{- else if eq .Role "assistant" }}<｜Assistant｜>{{ .Content }}{{- if not $last }}<｜end▁of▁sentence｜>{{- end }}\n'
              '{{- end }}\n{{- if and $last (ne .Role "assistant") }}<｜Assistant｜>{{- end }}\n{{- end }}')
    assert go(source) == ("You are a helpful assistant.<｜User｜>What is the capital of France?<｜Assistant｜>Paris."
                          "<｜end▁of▁sentence｜><｜User｜>And of Germany?<｜Assistant｜>")


# --- Go's rules --------------------------------------------------------------------------------


@pytest.mark.unit
def test_trim_markers_take_every_adjacent_space_and_newline() -> None:
    assert go("a \n\t {{- .System -}} \n\n b", SYSTEM_ONLY) == "aYou are a helpful assistant.b"
    assert go("a {{ .System }} b", SYSTEM_ONLY) == "a You are a helpful assistant. b"
    assert go("x {{-3}} y", []) == "x -3 y"  # no space after the dash: a negative number, no trimming
    assert go("line\n{{- /* a comment */ -}}\n next{{/* another */}}\n", []) == "linenext\n"


@pytest.mark.unit
def test_a_final_newline_and_carriage_returns_and_jinja_lookalikes_stay() -> None:
    assert go("{{ .System }}\r\n{% raw %} {# #} {{ `{{` }}{\n", SYSTEM_ONLY) == "You are a helpful assistant.\r\n{% raw %} {# #} {{{\n"


@pytest.mark.unit
def test_variables_are_scoped_and_assigned_as_in_go() -> None:
    source = ('{{ $x := "outer" }}{{ $n := 0 }}{{ range .Messages }}{{ $x := "inner" }}{{ $n = len $.Messages }}{{ end }}'
              '{{ $x }} {{ $n }}')
    assert go(source) == "outer 4"
    assert go('{{ range $i, $m := .Messages }}{{ $i }}={{ $m.Role }} {{ end }}') == "0=system 1=user 2=assistant 3=user "
    assert go('{{ range $m := .Messages }}{{ $m.Content | len }},{{ end }}') == "28,30,6,15,"


@pytest.mark.unit
def test_dot_moves_with_range_and_with_and_dollar_stays_the_root() -> None:
    source = '{{ range .Messages }}{{ with .Content }}[{{ . }}|{{ len $.Messages }}]{{ else }}(empty){{ end }}{{ end }}'
    assert go(source, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]) == "[hi|2](empty)"


@pytest.mark.unit
def test_range_walks_maps_by_key_ints_and_says_else_when_empty() -> None:
    source = ('{{ range .Tools }}{{ range $k, $v := .Function.Parameters.Properties }}{{ $k }}:{{ $v.Type }} {{ end }}{{ end }}'
              '{{ range 3 }}{{ . }}{{ end }}{{ range .Messages }}x{{ else }}none{{ end }}')
    assert go(source, [], tools=TOOLS) == "city:string unit:string 012none"


@pytest.mark.unit
def test_break_and_continue() -> None:
    source = '{{ range .Messages }}{{ if eq .Role "system" }}{{ continue }}{{ end }}{{ if eq .Role "assistant" }}{{ break }}{{ end }}{{ .Content }}{{ end }}'
    assert go(source) == "What is the capital of France?"


@pytest.mark.unit
def test_comparisons_and_logic_return_what_go_returns() -> None:
    assert go(ONCE + '{{ or .Prompt "fallback" }} {{ and .System 7 }} {{ not .Tools }} {{ eq 1 2 3 1 }} {{ ne "a" "b" }}') \
        == "fallback 7 true true true"
    assert go('{{ lt 1 2 }} {{ ge "b" "a" }} {{ le 2.5 2.5 }} {{ gt 1 2 }}', []) == "true true true false"
    with pytest.raises(BackendError, match="incompatible types for comparison"):
        go(ONCE + '{{ eq .System 1 }}')


@pytest.mark.unit
def test_strings_are_bytes_to_len_slice_and_index() -> None:
    assert go('{{ len "héllo" }} {{ slice "héllo" 0 1 }} {{ index "abc" 1 }} {{ slice (slice $.Messages 1 3) 1 | len }}') == \
        "6 h 98 1"
    assert go('{{ with index .Messages 1 }}{{ .Content }}{{ end }}') == "What is the capital of France?"
    # Ollama does not see .Messages inside ( ).Field, so it runs this per turn, with no .Messages.
    with pytest.raises(BackendError, match="index of untyped nil"):
        go('{{ (index .Messages 1).Content }}')
    assert go("{{ range .Messages }}{{ .ToolCalls }}{{ .Images }};{{ end }}", CHAT[:2]) == "[][];[][];"
    with pytest.raises(BackendError, match="index out of range: 9"):
        go('{{ index .Messages 9 }}')


@pytest.mark.unit
def test_printf_print_and_println() -> None:
    assert go('{{ printf "%s has %d turns, %q %5.2f%%" .System (len .Messages) "x" 3.14159 }}') == \
        'You are a helpful assistant. has 4 turns, "x"  3.14%'
    assert go('{{ printf "%d %s" "no" }}|{{ print 1 2 "a" "b" 3 }}|{{ println "a" 1 }}', []) == \
        "%!d(string=no) %!s(MISSING)|1 2ab3|a 1\n"


@pytest.mark.unit
def test_json_is_gos_compact_html_safe_encoding() -> None:
    calls = [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {
        "b": 3, "a": [2.5, 1e21, 1e-7, True, None], "c": {"z": "<&>", "y": "\u2028"}}}}]}]
    assert go('{{ range .Messages }}{{ range .ToolCalls }}{{ json .Function.Arguments }}{{ end }}{{ end }}', calls) == \
        '{"a":[2.5,1e+21,1e-7,true,null],"b":3,"c":{"y":"\\u2028","z":"\\u003c\\u0026\\u003e"}}'
    assert go('{{ json (index .Messages 0) }}', [{"role": "user", "content": "hi"}]) == \
        '{"Role":"user","Content":"hi","Thinking":"","Images":null,"ToolCalls":null,"ToolName":"","ToolCallID":""}'


@pytest.mark.unit
def test_tools_print_as_json_and_arguments_sent_as_a_string_are_read() -> None:
    chat = [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}]
    source = ('{{ range .Messages }}{{ range .ToolCalls }}{{ .ID }} {{ .Function.Arguments }} {{ index .Function.Arguments "city" }}'
              ' {{ index .Function.Arguments "nope" }}{{ end }}{{ end }}|{{ range .Tools }}{{ .Function.Parameters }}{{ end }}')
    assert go(source, chat, tools=TOOLS) == (
        'call_1 {"city":"Oslo"} Oslo <no value>|{"type":"object","required":["city"],"properties":{"city":{"type":"string",'
        '"description":"City name"},"unit":{"type":"string","description":"Temperature unit","enum":["celsius","fahrenheit"]}}}')
    assert go(ONCE + "{{ .Tools }}|{{ if .Tools }}yes{{ end }}", []) == "null|"


@pytest.mark.unit
def test_typescript_types_and_dates() -> None:
    source = ONCE + '{{ range .Tools }}{{ range $n, $p := .Function.Parameters.Properties }}{{ $n }}: {{ toTypeScriptType $p }}; {{ end }}{{ end }}'
    assert go(source, [], tools=TOOLS) == "city: string; unit: string; "
    assert len(go("{{ currentDate }}", [])) == len("2006-01-02")


@pytest.mark.unit
def test_think_values() -> None:
    source = "{{ if .IsThinkSet }}{{ .Think }}/{{ .ThinkLevel }}{{ else }}unset{{ end }}"
    assert (go(source, [], think=True), go(source, [], think=False), go(source, [])) == ("true/medium", "false/", "unset")


@pytest.mark.unit
def test_messages_of_one_role_in_a_row_are_merged_and_system_collects_them_all() -> None:
    chat = [{"role": "system", "content": "A"}, {"role": "user", "content": "one"}, {"role": "user", "content": "two"},
            {"role": "system", "content": "B"}, {"role": "tool", "content": "t1"}, {"role": "tool", "content": "t2"}]
    assert go("{{ .System }}|{{ range .Messages }}{{ .Role }}:{{ .Content }};{{ end }}", chat) == \
        "A\n\nB|system:A;user:one\n\ntwo;system:B;tool:t1;tool:t2;"


@pytest.mark.unit
def test_a_missing_root_key_prints_no_value_and_an_unknown_field_fails() -> None:
    assert go(ONCE + "{{ .Prompt }}|{{ .Nothing.At.All }}|{{ if .Suffix }}x{{ end }}") == "<no value>|<no value>|"
    with pytest.raises(BackendError, match="can't evaluate field Nope in type"):
        go("{{ range .Messages }}{{ .Nope }}{{ end }}")


@pytest.mark.unit
def test_legacy_templates_run_per_turn_and_the_last_turn_stops_at_the_response() -> None:
    # No .Response: Ollama appends one, so earlier turns carry the answers.
    assert go("[{{ .System }}|{{ .Prompt }}]") == "[You are a helpful assistant.|What is the capital of France?]Paris.[|And of Germany?]"
    assert go("{{ .Prompt }}:{{ .Response }}<end>\n") == "What is the capital of France?:Paris.<end>\nAnd of Germany?:"
    # Conditions are not cut; what follows the response inside and after them is.
    assert go("{{ .Prompt }}{{ if .Response }}[{{ .Response }}]{{ end }}!") == "What is the capital of France?[Paris.]!And of Germany?"
    # A system message after a turn starts a new turn; tool results have no place and are left out.
    chat = [{"role": "user", "content": "u1"}, {"role": "tool", "content": "t"}, {"role": "system", "content": "s2"},
            {"role": "user", "content": "u2"}]
    assert go("({{ .System }}/{{ .Prompt }}/{{ .Response }})", chat) == "(/u1/)(s2/u2/"


@pytest.mark.unit
def test_the_converted_template_says_how_ollama_executes_it() -> None:
    assert to_jinja("{{ range .Messages }}{{ .Content }}{{ end }}").startswith(
        "{# r1: converted from an Ollama Go template (messages; uses: content, messages) #}")
    assert to_jinja("{{ if .Tools }}{{ .Tools }}{{ end }}{{ .Prompt }}").startswith(
        "{# r1: converted from an Ollama Go template (legacy; uses: prompt, tools) #}")


# --- telling Go from Jinja, and what cannot be converted ---------------------------------------


@pytest.mark.unit
def test_go_and_jinja_templates_are_told_apart() -> None:
    for path in sorted(FIXTURES.glob("*/*.gotmpl")):
        assert is_go_template(path.read_text()), path
    assert is_go_template("{{ .Prompt }}") and is_go_template('{{- if eq .Role "user" }}x{{ end }}')
    for jinja in (DEFAULT_TEMPLATE, GEMMA_TEMPLATE, THINK_TEMPLATE, TOOL_TEMPLATE, "{{ bos_token }}{{ messages[0]['content'] }}"):
        assert not is_go_template(jinja)
        assert as_jinja(jinja) == jinja


@pytest.mark.unit
@pytest.mark.parametrize(("source", "named", "line"), [
    ('{{ .Prompt }}\n{{ define "x" }}y{{ end }}', "{{ define }} is not supported", 2),
    ('{{ template "x" . }}', "{{ template }} is not supported", 1),
    ('{{ block "x" . }}y{{ end }}', "{{ block }} is not supported", 1),
    ("{{ html .Prompt }}", "the function html is not supported", 1),
    ("{{ .Prompt | upper }}", 'function "upper" not defined', 1),
    ("{{ .Prompt }}\n\n{{ if .System }}", "{{ if }} has no {{ end }}", 3),
    ("{{ .Prompt ", "unclosed action", 1),
    ("{{ .Prompt }}\n{{ $x }}", "undefined variable $x", 2),
    ("{{ break }}", "{{ break }} outside {{ range }}", 1),
    ("{{ .Prompt .System }}", ".Prompt is given arguments, but only functions take them", 1),
    ("{{ not .A .B }}", "wrong number of arguments for not: 2", 1),
    ("{{ 1i }}", "complex number 1i is not supported", 1),
])
def test_what_cannot_be_converted_is_named_with_its_line(source: str, named: str, line: int) -> None:
    with pytest.raises(GoTemplateError) as caught:
        to_jinja(source)
    message = str(caught.value)
    assert message.startswith("the Go template cannot be converted: ") and named in message
    assert message.endswith(f"(line {line})") and caught.value.status == 400


# --- through the API ---------------------------------------------------------------------------

GO_TOOLS = (FIXTURES / "templates" / "qwen3.gotmpl").read_text()


async def test_create_stores_a_go_template_as_jinja_and_refuses_one_it_cannot_convert(api: InProcess) -> None:
    await api.add_model("tiny")
    response = await api.client.post("/api/create", json={"model": "qwen-like", "from": "tiny", "template": GO_TOOLS,
                                                          "stream": False})
    assert response.status == 200, await response.text()
    shown = await (await api.client.post("/api/show", json={"model": "qwen-like"})).json()
    assert shown["template"] == to_jinja(GO_TOOLS)
    assert render(shown["template"], TOOL_CHAT, bos_token="", eos_token="", tools=TOOLS) == \
        (FIXTURES / "expected" / "qwen3.txt").read_text()
    response = await api.client.post("/api/create", json={"model": "bad", "from": "tiny",
                                                          "template": '{{ .Prompt }}\n{{ template "x" }}'})
    assert response.status == 400
    assert (await response.json())["error"] == ("the Go template cannot be converted: {{ template }} is not supported: r1 "
                                                "converts a single template, not templates that define or call other "
                                                "templates (line 2)")


async def test_the_template_field_of_generate_takes_go(api: InProcess) -> None:
    await api.add_model("tiny")
    legacy = "{{ if .System }}<<{{ .System }}>>{{ end }}Q: {{ .Prompt }}\nA:"
    response = await api.client.post("/api/generate", json={"model": "tiny", "prompt": "Hi", "template": legacy,
                                                            "stream": False})
    assert response.status == 200, await response.text()
    assert api.runners.requests[-1]["template"] == to_jinja(legacy)
    response = await api.client.post("/api/generate", json={"model": "tiny", "prompt": "Hi", "template": "{{ .Prompt | html }}"})
    assert response.status == 400 and "the function html is not supported" in (await response.json())["error"]


def test_the_ollama_client_gets_a_400_for_what_cannot_be_converted(gemma_daemon: Daemon) -> None:
    client = ollama.Client(host="http://localhost", transport=httpx.HTTPTransport(uds=str(gemma_daemon.socket)))
    with pytest.raises(ollama.ResponseError) as caught:
        client.create(model="go-broken", from_="gemma", template='{{ define "turn" }}{{ .Content }}{{ end }}')
    assert caught.value.status_code == 400 and "{{ define }} is not supported" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate("gemma", "Hi", template="{{ .Prompt | js }}")
    assert caught.value.status_code == 400 and "the function js is not supported" in caught.value.error


GREEDY = {"temperature": 0}
GEMMA_GO = ('{{- range .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}user{{ end }}\n'
            '{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n')


def test_a_modelfile_with_a_go_template_chats_through_the_real_runner(gemma_daemon: Daemon, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f'FROM gemma\nTEMPLATE """{GEMMA_GO}"""\nPARAMETER stop <end_of_turn>\nPARAMETER num_predict 24\n')
    gemma_daemon.cli("create", "gemma-go", "-f", str(modelfile))
    chat = {"model": "gemma-go", "stream": False, "options": GREEDY, "messages": [
        {"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"}]}
    # What the template renders, written out by hand, sent raw with the model's parameters.
    raw = {"model": "gemma", "raw": True, "stream": False, "options": {**GREEDY, "stop": ["<end_of_turn>"], "num_predict": 24},
           "prompt": "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\nParis.<end_of_turn>\n"
                     "<start_of_turn>user\nAnd of Italy?<end_of_turn>\n<start_of_turn>model\n"}
    answers = []
    # One runner serves both names. The first request evaluates the prompt; the next two find it
    # cached, so the same prompt gives the same greedy answer.
    for path, body in (("/api/chat", chat), ("/api/generate", raw), ("/api/chat", chat)):
        status, answer = gemma_daemon.request("POST", path, body)
        assert status == 200, answer
        answers.append((answer["message"]["content"] if "message" in answer else answer["response"], prompt_tokens(answer)))
    assert answers[1] == answers[2] and answers[1][0].strip() and answers[0][1] == answers[1][1]
    status, shown = gemma_daemon.request("POST", "/api/show", {"model": "gemma-go"})
    assert shown["template"] == to_jinja(GEMMA_GO)


def test_generate_with_a_legacy_go_template_through_the_real_runner(gemma_daemon: Daemon) -> None:
    legacy = ("{{ if .System }}<start_of_turn>user\n{{ .System }}<end_of_turn>\n{{ end }}"
              "<start_of_turn>user\n{{ .Prompt }}<end_of_turn>\n<start_of_turn>model\n{{ .Response }}<end_of_turn>\n")
    body = {"model": "gemma", "prompt": "Name a color.", "system": "Answer in one word.", "template": legacy,
            "stream": False, "options": {**GREEDY, "num_predict": 8, "stop": ["<end_of_turn>"]}}
    # What the template renders, cut after {{ .Response }}, written out by hand, sent raw.
    raw = ("<start_of_turn>user\nAnswer in one word.<end_of_turn>\n<start_of_turn>user\nName a color.<end_of_turn>\n"
           "<start_of_turn>model\n")
    answers = []
    # The first request evaluates the prompt; the next two find it cached (see the chat test above).
    for request in (body, {**body, "template": None, "system": None, "prompt": raw, "raw": True}, body):
        status, answer = gemma_daemon.request("POST", "/api/generate", request)
        assert status == 200, answer
        answers.append((answer["response"], prompt_tokens(answer)))
    assert answers[1] == answers[2] and answers[1][0].strip() and answers[0][1] == answers[1][1]
