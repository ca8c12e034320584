"""The chat's slash commands as Ollama has them (/set system, /set format, /save, /load, /?), typed at
`r1 run`'s `>>> ` prompt on a pseudo-terminal, against a real daemon and the tiny random model.

The daemon logs prompts here (R1_LOG_PROMPTS=1): the tests read the messages each turn sent from
its request log, since a cached prompt prefix keeps `prompt eval count` from saying it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import Daemon, private_daemon
from tests.support.polling import wait_until
from r1.cli.stream_render import ERASE_LINE
from tests.support.terminal import Terminal, say
from tests.support.tinymodels import write_tiny_gguf


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with private_daemon(tmp_path_factory.mktemp("chat-commands"), R1_LOG_PROMPTS="1") as running:
        yield running


def sent(daemon: Daemon, term: Terminal, line: str) -> list[dict[str, str]]:
    """Send `line` as a message; the messages that turn's /api/chat request carried."""
    newest = max((r["id"] for r in chats(daemon)), default=0)
    say(term, line)
    wait_until(lambda: chats(daemon) and chats(daemon)[0]["id"] > newest)
    return json.loads(chats(daemon)[0]["prompt"])


def chats(daemon: Daemon) -> list[dict]:
    """The request log's latest /api/chat requests, newest first. Reads left out (reads=0): each poll of
    /api/log is itself logged, and enough of them would push the chats out of the window."""
    rows = daemon.request("GET", "/api/log?limit=50&reads=0")[1]["requests"]
    return [r for r in rows if r["route"] == "/api/chat"]


def reply(term: Terminal, line: str) -> str:
    """Send `line`; the answer's text, after the load spinner and before the stats."""
    answer = say(term, line).rpartition(ERASE_LINE.replace("\r", ""))[2]
    return answer.split("total duration:")[0].strip()


def test_set_system_replaces_the_system_message_and_clear_keeps_it(daemon: Daemon, tiny: str, terminal) -> None:
    term = terminal("run", tiny)
    term.expect(">>> ")
    say(term, "/set parameter num_predict 1")
    assert [m["role"] for m in sent(daemon, term, "hi")] == ["user"]
    say(term, "/clear")

    system = "You are a terse pirate who answers in one word."
    assert "Set system message." in say(term, f"/set system {system}")
    assert system in say(term, "/show system")
    messages = sent(daemon, term, "hi")
    assert [m["role"] for m in messages] == ["system", "user"] and messages[0]["content"] == system

    assert "Cleared session context" in say(term, "/clear")
    assert [m["role"] for m in sent(daemon, term, "hi")] == ["system", "user"]  # the turns go, the system stays

    term.type('/set system """Be\r')  # multi-line, as Ollama reads it
    term.expect("... ")
    assert "Set system message." in say(term, 'brief."""')
    assert "Be\nbrief." in say(term, "/show system")
    messages = sent(daemon, term, "and now?")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]  # replaced, not added
    assert messages[0]["content"] == "Be\nbrief."

    assert "Unknown command '/set frobnicate'" in say(term, "/set frobnicate")
    term.type("/bye\r")
    assert term.wait() == 0


def test_set_format_json_and_noformat(daemon: Daemon, tiny: str, terminal) -> None:
    term = terminal("run", tiny)
    term.expect(">>> ")
    say(term, "/set parameter num_predict 4")
    assert "Set format to 'json' mode." in say(term, "/set format json")
    assert reply(term, "give me json").startswith("{")  # the grammar allows nothing else first
    assert "Invalid or missing format" in say(term, "/set format yaml")
    assert "Disabled format." in say(term, "/set noformat")
    term.type("/bye\r")
    assert term.wait() == 0


def test_save_makes_a_model_of_the_session_and_load_switches_model(daemon: Daemon, tiny: str, terminal,
                                                                   tmp_path: Path) -> None:
    daemon.cli("import", str(write_tiny_gguf(tmp_path / "other.gguf", seed=5)), "--name", "other")
    daemon.cli("import", str(write_tiny_gguf(tmp_path / "vectors.gguf", seed=4, pooling_type=1)), "--name", "vectors")
    term = terminal("run", tiny)
    term.expect(">>> ")
    help_text = say(term, "/?")
    assert "/load <model>" in help_text and "/save <model>" in help_text
    set_help = say(term, "/? set")
    assert "/set system <string>" in set_help and "/set format json" in set_help and "/set noformat" in set_help

    say(term, "/set parameter num_predict 1")
    say(term, "/set system Talk like a pirate.")
    sent(daemon, term, "ahoy")
    assert "Created new model 'pirate'" in say(term, "/save pirate")
    status, saved = daemon.request("POST", "/api/show", {"model": "pirate"})
    assert status == 200 and saved["system"] == "Talk like a pirate."
    assert re.search(r"^num_predict +1$", saved["parameters"], re.M), saved["parameters"]
    assert [m["role"] for m in saved["messages"]] == ["system", "user", "assistant"]
    assert saved["messages"][1]["content"] == "ahoy"
    assert "error: " in say(term, "/save Not_A_Valid_Name!")

    assert "Couldn't find model 'no-such-model'" in say(term, "/load no-such-model")
    assert "vectors is an embedding model: it cannot chat" in say(term, "/load vectors")
    assert "Loading model 'other'" in say(term, "/load other")
    status, running = daemon.request("GET", "/api/ps")
    assert "other:latest" in [m["name"] for m in running["models"]]
    # A new conversation with the other model: no system message and no turns before, the parameters kept.
    assert "This model has no system." in say(term, "/show system")
    assert sent(daemon, term, "ahoy") == [{"role": "user", "content": "ahoy"}]
    row = chats(daemon)[0]
    assert row["model"] == "other:latest" and row["output_tokens"] == 1, row  # num_predict 1 still set
    term.type("/bye\r")
    assert term.wait() == 0
