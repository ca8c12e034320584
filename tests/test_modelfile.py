"""The Modelfile parser: Ollama's syntax in, the body of a POST /api/create out; then Modelfiles through the real
`r1 create` and a daemon: num_keep, a FROM model pulled first, and the README's example as written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import Daemon, private_daemon
from tests.support.fakehub import FakeHub
from tests.support.tinymodels import TEST_CACHE, gemma_gguf
from r1.cli.modelfile import ModelfileError, parameter_value, parse, resolve_from
from tests.support.terminal import Terminal
from tests.support.tinymodels import write_tiny_gguf

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.unit
def test_every_instruction(tmp_path: Path) -> None:
    text = '''# a comment
FROM llama3.2
PARAMETER temperature 0.7
PARAMETER num_ctx 4096
SYSTEM "You are a pirate."
TEMPLATE {{ .Prompt }}
LICENSE MIT
MESSAGE user Hello there
MESSAGE assistant "Ahoy!"
'''
    assert parse(text, base=tmp_path) == {
        "from": "llama3.2",
        "parameters": {"temperature": 0.7, "num_ctx": 4096},
        "system": "You are a pirate.",
        "template": "{{ .Prompt }}",
        "license": "MIT",
        "messages": [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Ahoy!"}],
    }


@pytest.mark.unit
def test_instructions_and_roles_are_case_insensitive(tmp_path: Path) -> None:
    body = parse("from tiny\nParameter TOP_K 5\nsystem hi\nmessage USER yo\n", base=tmp_path)
    assert body == {"from": "tiny", "parameters": {"top_k": 5}, "system": "hi",
                    "messages": [{"role": "user", "content": "yo"}]}


@pytest.mark.unit
def test_triple_quotes_span_lines_and_keep_them_verbatim(tmp_path: Path) -> None:
    text = 'FROM tiny\nTEMPLATE """{{ if .System }}<sys>\n  {{ .System }}\n\n# not a comment\n"""\nSYSTEM """one line"""\n'
    body = parse(text, base=tmp_path)
    assert body["template"] == "{{ if .System }}<sys>\n  {{ .System }}\n\n# not a comment\n"
    assert body["system"] == "one line"


@pytest.mark.unit
def test_quotes_keep_inner_spaces_and_bare_values_are_trimmed(tmp_path: Path) -> None:
    body = parse('FROM tiny\nSYSTEM "  padded  "\nLICENSE   bare value   \n', base=tmp_path)
    assert body["system"] == "  padded  "
    assert body["license"] == "bare value"


@pytest.mark.unit
def test_stop_lines_collect_into_a_list(tmp_path: Path) -> None:
    text = 'FROM tiny\nPARAMETER stop "<|im_end|>"\nPARAMETER stop <|im_start|>\nPARAMETER stop "User:"\n'
    assert parse(text, base=tmp_path)["parameters"] == {"stop": ["<|im_end|>", "<|im_start|>", "User:"]}


@pytest.mark.unit
def test_later_system_and_template_win_licenses_join(tmp_path: Path) -> None:
    body = parse("FROM tiny\nSYSTEM a\nSYSTEM b\nLICENSE one\nLICENSE two\n", base=tmp_path)
    assert body["system"] == "b"
    assert body["license"] == "one\n\ntwo"


@pytest.mark.unit
@pytest.mark.parametrize("name, text, value", [
    ("num_predict", "8", 8), ("seed", "-1", -1), ("temperature", "1", 1.0), ("top_p", "0.9", 0.9),
    ("min_p", "5e-2", 0.05), ("repeat_penalty", "1.1", 1.1), ("use_mmap", "false", False),
    ("use_mmap", "TRUE", True), ("stop", "</s>", "</s>"),
])
def test_parameter_types(name: str, text: str, value: object) -> None:
    converted = parameter_value(name, text)
    assert converted == value and type(converted) is type(value)


@pytest.mark.unit
@pytest.mark.parametrize("line, message", [
    ("PARAMETER num_ctx big", "line 3: parameter 'num_ctx' must be an integer, not 'big'"),
    ("PARAMETER num_ctx 2.5", "line 3: parameter 'num_ctx' must be an integer"),
    ("PARAMETER temperature hot", "line 3: parameter 'temperature' must be a number"),
    ("PARAMETER use_mmap maybe", "line 3: parameter 'use_mmap' must be true or false"),
    ("PARAMETER flavour sweet", "line 3: unknown parameter 'flavour'"),
    ("PARAMETER num_ctx", "line 3: PARAMETER needs a name and a value"),
    ("ADAPTER ./lora.gguf", "line 3: ADAPTER is not supported by r1"),
    ("QUANTIZE q4", "line 3: unknown instruction 'QUANTIZE'"),
    ("MESSAGE tool hi", "line 3: MESSAGE role must be one of system, user, assistant, not 'tool'"),
    ('SYSTEM "open', 'line 3: unterminated "'),
    ("SYSTEM", "line 3: SYSTEM needs a value"),
    ("FROM other", "line 3: a second FROM"),
])
def test_errors_name_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ModelfileError) as caught:
        parse(f"FROM tiny\n# comment\n{line}\nSYSTEM fine\n", "models/Modelfile", tmp_path)
    assert str(caught.value).startswith("models/Modelfile, ")
    assert message in str(caught.value)


@pytest.mark.unit
def test_unterminated_triple_quote_names_its_opening_line(tmp_path: Path) -> None:
    with pytest.raises(ModelfileError, match=r'Modelfile, line 2: unterminated """'):
        parse('FROM tiny\nTEMPLATE """never\nclosed\n', base=tmp_path)
    with pytest.raises(ModelfileError, match=r'line 2: unexpected text after the closing """'):
        parse('FROM tiny\nTEMPLATE """a\nb""" c\n', base=tmp_path)


@pytest.mark.unit
def test_from_is_required(tmp_path: Path) -> None:
    with pytest.raises(ModelfileError, match="Modelfile: no FROM line"):
        parse("# nothing\nSYSTEM hi\n", base=tmp_path)


@pytest.mark.unit
def test_from_a_name_or_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    (tmp_path / "mlx").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_from("llama3.2:1b", tmp_path) == ("from", "llama3.2:1b")
    assert resolve_from("hf.co/org/repo:Q4_K_M", tmp_path) == ("from", "hf.co/org/repo:Q4_K_M")
    # Relative paths are read from the Modelfile's folder, not the current one.
    assert resolve_from("model.gguf", tmp_path) == ("path", str(tmp_path / "model.gguf"))
    assert resolve_from("mlx", tmp_path) == ("path", str(tmp_path / "mlx"))
    assert resolve_from("./model.gguf", tmp_path) == ("path", str(tmp_path / "model.gguf"))
    assert resolve_from("../x/model.gguf", tmp_path / "x") == ("path", str(tmp_path / "x" / "model.gguf"))
    assert resolve_from("~/model.gguf", Path("/elsewhere")) == ("path", str(tmp_path / "model.gguf"))
    assert resolve_from("/abs/m.gguf", tmp_path) == ("path", "/abs/m.gguf")


@pytest.mark.unit
def test_from_a_path_sends_it_absolute_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    assert parse("FROM ./model.gguf\n", base=tmp_path) == {"path": str(tmp_path / "model.gguf")}
    with pytest.raises(ModelfileError, match=r"line 2: no such file or folder: .*/nothere\.gguf"):
        parse("\nFROM ./nothere.gguf\n", base=tmp_path)


# --- through `r1 create` and a daemon --------------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with the README's first model (the bundled SmolLM2 135M Instruct), a tiny byte-level ChatML
    model, and the base Gemma 3 270M under the catalog's name for the instruction-tuned one: the store the
    issue's tester had."""
    root = tmp_path_factory.mktemp("made")
    with private_daemon(root) as daemon:
        daemon.cli("import", "--bundled")
        daemon.cli("import", str(gemma_gguf(TEST_CACHE)), "--name", "gemma3:270m")
        daemon.cli("import", str(write_tiny_gguf(root / "tiny.gguf")), "--name", "tiny")
        yield daemon


def create(daemon: Daemon, name: str, text: str, folder: Path) -> None:
    (folder / f"{name}.Modelfile").write_text(text)
    daemon.cli("create", name, "-f", str(folder / f"{name}.Modelfile"))


def prompt_tokens(daemon: Daemon, model: str, messages: list[dict[str, str]]) -> int:
    """How many tokens the prompt of this chat came to, evaluated now or found in a slot."""
    status, answer = daemon.request("POST", "/api/chat", {"model": model, "messages": messages, "stream": False,
                                                          "options": {"num_predict": 1}})
    assert status == 200, answer
    return answer["prompt_eval_count"] + answer.get("prompt_cached", 0)


def turn(role: str, letter: str, count: int) -> dict[str, str]:
    return {"role": role, "content": letter * count}


def test_num_keep_keeps_the_start_of_a_chat_that_loses_old_messages(made: Daemon, tmp_path: Path) -> None:
    # A byte per token, 256 of context: five turns of ChatML (about 450 tokens) do not fit.
    first, last = turn("user", "A", 70), turn("user", "E", 10)
    chat = [first, turn("assistant", "B", 70), turn("user", "C", 70), turn("assistant", "D", 70), last]
    create(made, "keeper", "FROM tiny\nPARAMETER num_ctx 256\nPARAMETER num_keep 40\n", tmp_path)
    create(made, "dropper", "FROM tiny\nPARAMETER num_ctx 256\n", tmp_path)
    # Without num_keep the oldest messages go first; with it, the first turn (within its 40 tokens) stays.
    assert prompt_tokens(made, "dropper", chat) == prompt_tokens(made, "dropper", [chat[3], last])
    assert prompt_tokens(made, "keeper", chat) == prompt_tokens(made, "keeper", [first, last])
    assert prompt_tokens(made, "keeper", [first, last]) != prompt_tokens(made, "keeper", [chat[3], last])
    # -1 keeps the whole prompt, as in Ollama: nothing may go, and the chat is refused with the reason.
    status, answer = made.request("POST", "/api/chat", {"model": "keeper", "messages": chat, "stream": False,
                                                        "options": {"num_keep": -1}})
    assert status >= 400 and "fills the model's context of 256" in answer["error"]


def readme_modelfile() -> str:
    return re.search(r"<!-- modelfile-example -->\n```\n(.*?)```", README.read_text(), re.S).group(1)


def test_the_readmes_modelfile_works_as_written(made: Daemon, tmp_path: Path) -> None:
    create(made, "concise", readme_modelfile(), tmp_path)
    answer = made.cli("run", "concise", "Why is the sky blue?", timeout=120).stdout
    assert "sky" in answer.lower() or "blue" in answer.lower(), answer
    # The model ends its answer itself (a seed makes the sampling repeatable), far from the context's end.
    question = [{"role": "user", "content": "Why is the sky blue?"}]
    status, chat = made.request("POST", "/api/chat", {"model": "concise", "messages": question, "stream": False,
                                                      "options": {"seed": 1}})
    assert status == 200 and chat["done_reason"] == "stop" and 0 < chat["eval_count"] < 256, chat


@pytest.fixture
def catalog_hub(tmp_path: Path) -> Iterator[FakeHub]:
    """A Hub with the catalog's repo for gemma3:270m (a tiny model stands in for it)."""
    with FakeHub() as hub:
        hub.add_repo("unsloth/gemma-3-270m-it-GGUF",
                     {"gemma-3-270m-it-Q4_K_M.gguf": write_tiny_gguf(tmp_path / "g.gguf", seed=7)})
        yield hub


def test_create_pulls_a_from_model_the_store_lacks(catalog_hub: FakeHub, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text("FROM gemma3:270m\nSYSTEM You are brief.\n")
    (tmp_path / "d").mkdir()
    with private_daemon(tmp_path / "d", **catalog_hub.env(), HF_HOME=str(tmp_path / "hf")) as daemon:
        terminal = Terminal(["create", "brief", "-f", str(tmp_path / "Modelfile")], daemon.env)
        terminal.expect("pulling manifest")
        terminal.expect("100% [########################]")  # the file's progress bar, as `r1 pull` draws it
        terminal.expect("pulled gemma3:270m")
        terminal.expect("created brief")
        assert terminal.wait() == 0
        names = {line.split()[0] for line in daemon.cli("list").stdout.splitlines()[1:]}
        assert names == {"gemma3:270m", "brief:latest"}
        shown: dict[str, Any] = daemon.request("POST", "/api/show", {"model": "brief"})[1]
        assert shown["system"] == "You are brief." and shown["digest"] != ""
        [row] = [line for line in daemon.cli("search", "gemma3:270m").stdout.splitlines() if line.startswith("gemma3")]
        assert row.split()[3] == "yes"  # pulled from the catalog's repo
        # A FROM name that is nowhere is the create's error, with the pull's reason.
        (tmp_path / "Modelfile").write_text("FROM nosuch:1b\n")
        failed = daemon.cli("create", "x", "-f", str(tmp_path / "Modelfile"), check=False)
        assert failed.returncode == 1 and "nosuch" in failed.stderr
