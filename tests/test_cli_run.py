"""`r1 run` and `r1 create`: the streaming renderer on its own, then the commands through a real daemon.

The tiny model has random weights, so its text is gibberish: the tests check the shape of
what comes out (stats lines, JSON, prompts coming back), never its words.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import R1, Daemon, private_daemon, start_daemon
from tests.support.fakehub import FakeHub
from tests.support.fakeupstream import FakeUpstream
from r1.cli.render import wrap_words
from r1.cli.stream_render import DIM, ERASE_LINE, RESET, SPINNER_FRAMES, Answer, WordWrap, go_duration, stats
from tests.support.terminal import say
from tests.support.tinymodels import THINK_TEMPLATE, write_endless_gguf, write_tiny_gguf

# --- word wrapping and the answer's layout (no daemon) ----------------------------------------


def wrapped(pieces: list[str], width: int | None) -> str:
    out: list[str] = []
    wrap = WordWrap(out.append, width)
    for piece in pieces:
        wrap.feed(piece)
    wrap.end_line()
    return "".join(out)


@pytest.mark.unit
def test_words_cut_anywhere_are_wrapped_whole() -> None:
    text = "the quick brown fox jumps over the lazy dog"
    expected = "the quick\nbrown fox\njumps over\nthe lazy\ndog\n"  # a line may fill all 10 columns
    assert wrapped([text], 10) == expected
    assert wrapped(list(text), 10) == expected  # one character at a time
    assert wrapped(["the qu", "ick br", "own f", "ox jumps o", "ver the la", "zy dog"], 10) == expected


@pytest.mark.unit
def test_a_word_held_back_when_ctrl_c_comes_is_never_shown() -> None:
    out: list[str] = []
    wrap = WordWrap(out.append, 20)
    wrap.feed("There was a time wh")  # "wh" waits: the next piece may continue it
    wrap.drop_held()
    wrap.end_line()
    assert "".join(out) == "There was a time\n"


@pytest.mark.unit
def test_no_line_is_wider_than_the_width() -> None:
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt " * 3
    for width in (12, 20, 33):
        out = wrapped([text[i:i + 7] for i in range(0, len(text), 7)], width)
        assert all(len(line) <= width for line in out.splitlines())
        assert out.split() == text.split()  # nothing lost, no word split


@pytest.mark.unit
def test_a_word_longer_than_a_line_is_broken_at_the_margin() -> None:
    assert wrapped(["ab ", "0123456789", "abcdef gh"], 8) == "ab\n01234567\n89abcdef\ngh\n"


@pytest.mark.unit
def test_newlines_in_the_stream_reset_the_line_and_keep_indentation() -> None:
    assert wrapped(["one two\n", "  three four\n\nfive"], 9) == "one two\n  three\nfour\n\nfive\n"


@pytest.mark.unit
def test_without_a_width_text_passes_through() -> None:
    text = "a line far longer than any terminal would be, " * 5
    assert wrapped([text[:13], text[13:]], None) == text.rstrip(" ") + " \n"


@pytest.mark.unit
def test_thinking_is_dimmed_under_a_header_on_a_terminal() -> None:
    out: list[str] = []
    answer = Answer(WordWrap(out.append, 40), show_thinking=True, dim=True)
    for piece in ("Let me ", "see."):
        answer.thinking(piece)
    for piece in ("The ans", "wer.", ""):
        answer.content(piece)
    answer.finish()
    assert "".join(out) == f"{DIM}Thinking...\nLet me see.\n...done thinking.\n\n{RESET}The answer.\n"
    assert answer.text == "The answer."


@pytest.mark.unit
def test_thinking_off_a_terminal_is_plain_or_hidden() -> None:
    out: list[str] = []
    answer = Answer(WordWrap(out.append, None), show_thinking=True, dim=False)
    answer.thinking("hmm")
    answer.content("yes")
    answer.finish()
    assert "".join(out) == "Thinking...\nhmm\n...done thinking.\n\nyes\n"

    out.clear()
    hidden = Answer(WordWrap(out.append, None), show_thinking=False, dim=False)
    hidden.thinking("hmm")
    hidden.content("yes")
    hidden.finish()
    assert "".join(out) == "yes\n"


@pytest.mark.unit
def test_an_answer_stopped_while_thinking_ends_the_dim_style() -> None:
    out: list[str] = []
    answer = Answer(WordWrap(out.append, 20), show_thinking=True, dim=True)
    answer.thinking("half a tho")
    answer.finish()
    assert "".join(out) == f"{DIM}Thinking...\nhalf a tho{RESET}\n"
    assert answer.text == ""


@pytest.mark.unit
@pytest.mark.parametrize("ns, text", [
    (0, "0s"), (850, "850ns"), (12_500, "12.5µs"), (3_204_500, "3.2045ms"), (999_999_999, "999.999999ms"),
    (1_500_000_000, "1.5s"), (123_250_000_000, "2m3.25s"), (3_605_000_000_000, "1h0m5s"),
])
def test_durations_read_as_go_prints_them(ns: int, text: str) -> None:
    assert go_duration(ns) == text


@pytest.mark.unit
def test_verbose_stats_lines() -> None:
    done = {"total_duration": 2_500_000_000, "load_duration": 1_000_000, "prompt_eval_count": 26,
            "prompt_eval_duration": 130_000_000, "eval_count": 298, "eval_duration": 4_500_000_000}
    assert stats(done) == [
        "total duration:       2.5s",
        "load duration:        1ms",
        "prompt eval count:    26 token(s)",
        "prompt eval duration: 130ms",
        "prompt eval rate:     200.00 tokens/s",
        "eval count:           298 token(s)",
        "eval duration:        4.5s",
        "eval rate:            66.22 tokens/s",
    ]
    assert stats({"eval_count": 3}) == ["eval count:           3 token(s)"]


# --- through a real daemon ------------------------------------------------------------------------

STATS = re.compile(r"^eval count: +(\d+) token\(s\)$", re.M)


def r1(daemon: Daemon, *args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    """`r1 ARGS` with `stdin` piped in (never the test runner's own stdin)."""
    return subprocess.run([R1, *args], env=daemon.env, input=stdin, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the module's `r1` runs; each test uses model names of its own."""
    with private_daemon(tmp_path_factory.mktemp("cli-run")) as running:
        yield running


@pytest.mark.parametrize("argv", [("hi", "there", "--verbose"), ("--verbose", "hi", "there")])
def test_one_shot_with_verbose_stats(daemon: Daemon, tiny: str, argv: tuple[str, ...]) -> None:
    # A flag between the words of the prompt is still a flag, and the words still the prompt.
    result = r1(daemon, "run", tiny, *argv)
    assert result.returncode == 0, result.stderr
    for label in ("total duration", "load duration", "prompt eval count", "prompt eval rate", "eval duration", "eval rate"):
        assert re.search(rf"^{label}: +\S", result.stderr, re.M), f"no {label!r} in:\n{result.stderr}"
    assert int(STATS.search(result.stderr)[1]) >= 1
    assert "eval count" not in result.stdout  # stats go to stderr, the answer alone to stdout


def test_piped_stdin_is_the_prompt_or_comes_before_it(daemon: Daemon, tiny: str) -> None:
    def prompt_tokens(*args: str, stdin: str = "") -> int:
        result = r1(daemon, "run", tiny, *args, "--verbose", stdin=stdin)
        assert result.returncode == 0, result.stderr
        return int(re.search(r"^prompt eval count: +(\d+)", result.stderr, re.M)[1])

    # The tiny model's vocabulary is bytes, so every byte of the prompt is one token.
    alone = prompt_tokens("hi")
    assert prompt_tokens(stdin="x" * 40 + "\n") >= 40
    assert prompt_tokens("hi", stdin="y" * 30 + "\n") >= alone + 30 + 2  # the text, a blank line, the prompt


def test_empty_stdin_and_no_prompt_is_an_error(daemon: Daemon, tiny: str) -> None:
    result = r1(daemon, "run", tiny, stdin="")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: nothing to send")


def test_format_json(daemon: Daemon, tiny: str) -> None:
    result = r1(daemon, "run", tiny, "give me json", "--format", "json", "--nowordwrap")
    assert result.returncode == 0, result.stderr
    assert result.stdout.lstrip().startswith("{")  # the grammar allows nothing else first


def test_errors_exit_1(daemon: Daemon, tiny: str) -> None:
    result = r1(daemon, "run", tiny, "hi", "--keepalive", "not a duration")
    assert result.returncode == 1 and result.stderr.startswith("Error: "), result.stderr


def test_create_from_a_model_in_the_store(daemon: Daemon, tiny: str, tmp_path: Path) -> None:
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f'# a test model\nFROM {tiny}\nTEMPLATE """{template}"""\nPARAMETER num_predict 8\n'
                         'PARAMETER stop "user:"\nPARAMETER stop "system:"\nSYSTEM You are tiny.\n')
    result = r1(daemon, "create", "tiny8", "-f", str(modelfile))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "created tiny8\n"

    info = json.loads(daemon.cli("show", "tiny8", "--json").stdout)
    assert info["template"] == template
    assert info["system"] == "You are tiny."
    assert re.search(r"^num_predict +8$", info["parameters"], re.M), info["parameters"]
    assert re.search(r'^stop +"?user:"?$', info["parameters"], re.M), info["parameters"]

    result = r1(daemon, "run", "tiny8", "hi", "--verbose")
    assert result.returncode == 0, result.stderr
    assert 1 <= int(STATS.search(result.stderr)[1]) <= 8  # the Modelfile's num_predict holds


def test_create_from_a_file_next_to_the_modelfile(daemon: Daemon, tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    write_tiny_gguf(folder / "weights.gguf", seed=7)
    (folder / "Modelfile").write_text("FROM weights.gguf\nPARAMETER temperature 0.5\n")
    result = subprocess.run([R1, "create", "fromfile"], cwd=folder, env=daemon.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "created fromfile" in result.stdout
    info = json.loads(daemon.cli("show", "fromfile", "--json").stdout)
    assert info["model_info"]["general.architecture"] == "llama"
    assert re.search(r"^temperature +0\.5$", info["parameters"], re.M), info["parameters"]


def test_create_reports_modelfile_errors_with_the_line(daemon: Daemon, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM tiny\nPARAMETER num_ctx lots\n")
    result = r1(daemon, "create", "bad", "-f", str(modelfile))
    assert result.returncode == 1
    assert result.stderr == f"Error: {modelfile}, line 2: parameter 'num_ctx' must be an integer, not 'lots'\n"


def test_run_an_unknown_model_says_why(daemon: Daemon) -> None:
    result = r1(daemon, "run", "no-such-model-anywhere", "hi")
    assert result.returncode == 1 and result.stderr.startswith("Error: "), result.stderr


def test_run_a_model_without_a_chat_template_continues_the_prompt(daemon: Daemon, gemma_path: Path,
                                                                   tmp_path: Path) -> None:
    # Gemma 3 270M's GGUF has no chat template; the Modelfile adds none, only a short, greedy answer.
    daemon.cli("import", str(gemma_path), "--name", "gemma-base")
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM gemma-base\nPARAMETER num_predict 12\nPARAMETER temperature 0\n")
    assert r1(daemon, "create", "gemma", "-f", str(modelfile)).returncode == 0
    assert json.loads(daemon.cli("show", "gemma", "--json").stdout)["template"] == ""
    result = r1(daemon, "run", "gemma", "The capital of France is", "--verbose")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) >= 3  # a continuation, not an answer to a question
    assert "gemma has no chat template, so it continues the prompt as plain text" in result.stderr
    assert int(STATS.search(result.stderr)[1]) == 12


def test_run_pulls_a_model_the_store_lacks(daemon_env: dict[str, str], tmp_path: Path) -> None:
    with FakeHub() as hub:
        hub.add_repo("test/tiny-GGUF", {"tiny-Q8_0.gguf": write_tiny_gguf(tmp_path / "tiny.gguf")})
        env = {**daemon_env, **hub.env(), "HF_HOME": str(tmp_path / "hf")}
        env.pop("HF_TOKEN", None)
        daemon = start_daemon(env, tmp_path / "daemon.log")
        try:
            result = r1(daemon, "run", "test/tiny-GGUF", "hi", "--verbose")
            assert result.returncode == 0, result.stderr
            assert "pulled hf.co/test/tiny-GGUF" in result.stderr and "pulled" not in result.stdout
            assert STATS.search(result.stderr)
            assert "hf.co/test/tiny-GGUF:latest" in daemon.cli("list").stdout
        finally:
            assert daemon.stop() == 0, daemon.log()


# --- the interactive chat, on a pseudo-terminal ----------------------------------------------------


def test_interactive_chat(daemon: Daemon, tiny: str, terminal) -> None:
    term = terminal("run", tiny)
    term.expect(">>> ")
    assert "Set parameter 'num_predict' to '5'" in say(term, "/set parameter num_predict 5")
    assert "Set 'verbose' mode." in say(term, "/set verbose")

    answer = say(term, "hello")
    assert 1 <= int(STATS.search(answer)[1]) <= 5

    term.type('"""first line\r')
    term.expect("... ")
    term.type("second line\r")
    term.expect("... ")
    answer = say(term, 'last line"""')
    # One token per byte: the three lines went in as one message.
    assert int(re.search(r"prompt eval count: +(\d+)", answer)[1]) >= len("first line\nsecond line\nlast line")

    shown = say(term, "/show info")
    assert re.search(r"architecture +llama", shown) and re.search(r"context length +256", shown)
    assert "Capabilities\n    completion" in shown and re.search(r"num_predict +5", shown)

    assert "Cleared session context" in say(term, "/clear")
    assert "Unknown command '/frobnicate'. Type /? for help" in say(term, "/frobnicate")
    assert "/bye" in say(term, "/?")
    assert "Couldn't set parameter: unknown parameter 'warmth'" in say(term, "/set parameter warmth 3")

    # Ctrl-C at an empty prompt. A SIGINT that lands after readline drew the prompt but before it waits for a
    # key is only noted by CPython's readline until the next key (a race outside r1): a second Ctrl-C, as a
    # person would press, gets through then.
    term.type("\x03")
    deadline = time.monotonic() + 2
    while "Use Ctrl + d" not in term.output[term.seen:] and time.monotonic() < deadline:
        term.read(0.1)
    if "Use Ctrl + d" not in term.output[term.seen:]:
        term.type("\x03")
    term.expect("Use Ctrl + d or /bye to exit.")
    term.expect(">>> ")

    term.type("/bye\r")
    assert term.wait() == 0
    history = (daemon.home / "history").read_text()
    assert "/show info" in history and "hello" in history


def test_ctrl_c_stops_a_long_answer_and_the_chat_goes_on(daemon: Daemon, tmp_path: Path, terminal) -> None:
    daemon.cli("import", str(write_endless_gguf(tmp_path / "endless.gguf")), "--name", "endless")
    term = terminal("run", "endless", "--verbose")
    term.expect(">>> ")
    # 30000 tokens take a minute or more: nothing but Ctrl-C ends this answer within the test.
    for name, value in (("num_ctx", 32768), ("num_predict", 30000)):
        assert f"Set parameter '{name}'" in say(term, f"/set parameter {name} {value}")
    term.type("go on and on\r")
    term.expect("go on and on")
    deadline = time.monotonic() + 60
    while len(term.output) < term.seen + 200:  # let the answer get going
        assert time.monotonic() < deadline, f"the answer has not started:\n{term.output[term.seen:]}"
        term.read(0.1)
    term.type("\x03")
    cut = term.expect(">>> ", timeout=10)
    assert "eval count" not in cut  # no stats: the answer did not finish

    # The daemon stopped generating when the client left: a short answer comes at once.
    say(term, "/set parameter num_predict 3")
    answer = say(term, "and now?", timeout=20)
    assert 1 <= int(STATS.search(answer)[1]) <= 3
    term.type("\x04")  # Ctrl-D leaves too
    assert term.wait() == 0


def test_ctrl_c_ends_a_one_shot_answer_with_status_130(daemon: Daemon, tmp_path: Path) -> None:
    daemon.cli("import", str(write_endless_gguf(tmp_path / "endless.gguf")), "--name", "endless")
    process = subprocess.Popen([R1, "run", "endless", "go on and on"], env=daemon.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout.read(20), "the answer has not started"
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130  # as a shell reports SIGINT
        assert process.stderr.read() == b""  # no traceback, no "Aborted!"
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def test_thinking_shows_dimmed_on_a_terminal_and_off_it_only_when_asked(daemon: Daemon, tmp_path: Path, terminal) -> None:
    # The template opens <think> and this model never writes </think>: its whole answer is thinking.
    base = write_endless_gguf(tmp_path / "thinker.gguf", chat_template=THINK_TEMPLATE)
    daemon.cli("import", str(base), "--name", "thinker-base")
    (tmp_path / "Modelfile").write_text("FROM thinker-base\nPARAMETER num_predict 16\n")
    daemon.cli("create", "thinker", "-f", str(tmp_path / "Modelfile"))
    assert "thinking" in json.loads(daemon.cli("show", "thinker", "--json").stdout)["capabilities"]

    piped = r1(daemon, "run", "thinker", "hi")
    assert piped.returncode == 0 and piped.stdout == ""
    asked = r1(daemon, "run", "thinker", "hi", "--think")
    assert asked.returncode == 0 and asked.stdout.startswith("Thinking...\n") and len(asked.stdout) > 13
    assert "\033[" not in asked.stdout  # plain text in a pipe
    hidden = r1(daemon, "run", "thinker", "hi", "--think", "--hidethinking")
    assert hidden.returncode == 0 and hidden.stdout == ""

    term = terminal("run", "thinker", "hi")
    assert term.wait() == 0
    assert term.output.partition(ERASE_LINE)[2].startswith(f"{DIM}Thinking...\r\n")  # after the load's spinner
    # The dim style ends before the note that the model ran out while still thinking.
    assert term.output.endswith(f"{RESET}\r\n(thinker stopped while still thinking: all of it was reasoning, "
                                "with no answer yet; a higher num_predict or num_ctx gives it room)\r\n")


# --- loading: the spinner, Ctrl-C before the first token --------------------------------------------

@pytest.fixture(scope="module")
def stalled(daemon: Daemon) -> Iterator[str]:
    """A remote model whose upstream takes the request and never answers: a load that never ends."""
    with FakeUpstream() as upstream:
        daemon.cli("remote", "add", "stalling", upstream.url + "/v1")
        daemon.cli("create", "stalled", "--from", "stalling:no-first-byte")
        yield "stalled"


def test_a_spinner_shows_until_the_first_token_on_a_terminal_only(daemon: Daemon, tiny: str, terminal) -> None:
    term = terminal("run", tiny, "hi")
    assert term.wait() == 0
    spinning, erased, answer = term.output.partition(ERASE_LINE)
    assert erased and re.fullmatch(rf"(\r[{SPINNER_FRAMES}] )+", spinning), term.output
    assert answer.strip() and not re.search(f"[{SPINNER_FRAMES}]", answer)  # erased before the first token

    piped = r1(daemon, "run", tiny, "hi")  # stdout and stderr are pipes here
    assert piped.returncode == 0 and not re.search(f"[{SPINNER_FRAMES}]", piped.stdout + piped.stderr)


def test_ctrl_c_while_a_one_shot_answer_loads_exits_130_quietly(stalled: str, terminal) -> None:
    term = terminal("run", stalled, "hi")
    term.expect(f"\r{SPINNER_FRAMES[3]} ", timeout=30)  # it spins on while nothing comes
    term.type("\x03")
    assert term.wait() == 130
    after = term.output[term.seen:]
    assert after.endswith(ERASE_LINE) and after.count(ERASE_LINE) == 1, after  # the spinner erased, nothing else


def test_ctrl_c_while_a_turn_loads_goes_back_to_the_prompt(stalled: str, terminal) -> None:
    term = terminal("run", stalled)
    term.expect(">>> ")
    term.type("hello\r")
    term.expect(f"hello\r\n\r{SPINNER_FRAMES[0]} ")
    term.expect(f"\r{SPINNER_FRAMES[3]} ", timeout=30)
    term.type("\x03")
    cut = term.expect(">>> ", timeout=10)
    assert cut.endswith(f"{ERASE_LINE}\r\n"), cut
    assert "Error" not in cut and "Traceback" not in cut
    term.type("/bye\r")
    assert term.wait() == 0


# --- an embedding model: its vector ---------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = write_tiny_gguf(tmp_path_factory.mktemp("embedder") / "embedder.gguf", seed=4, pooling_type=1)
    daemon.cli("import", str(path), "--name", "embedder")
    return "embedder"


def test_run_on_an_embedding_model_prints_its_vector(daemon: Daemon, embedder: str, terminal) -> None:
    given = r1(daemon, "run", embedder, "hello", "world")
    assert given.returncode == 0 and given.stderr == "", given.stderr  # no note, no error
    vector = json.loads(given.stdout)
    assert given.stdout.count("\n") == 1 and len(vector) == 64 and all(isinstance(x, float) for x in vector)
    status, embedded = daemon.request("POST", "/api/embed", {"model": embedder, "input": "hello world"})
    assert status == 200 and vector == pytest.approx(embedded["embeddings"][0])

    piped = r1(daemon, "run", embedder, stdin="hello world\n")  # as `echo hello world | r1 run embedder`
    assert piped.returncode == 0 and json.loads(piped.stdout) == pytest.approx(vector)

    term = terminal("run", embedder)  # nothing to embed: it says how to give the text
    assert term.wait() == 1
    assert term.output.replace("\r\n", " ").startswith(
        'Error: embedder is an embedding model: give the text to embed as an argument or on stdin '
        '(r1 run embedder "your text here")'), term.output


# --- notes on a terminal ---------------------------------------------------------------------------


@pytest.mark.unit
def test_wrap_words_keeps_words_and_indents_whole() -> None:
    note = "Warning: gemma3:270m needs about 4.7 GB at num_ctx 8192, more than the budget"
    assert wrap_words(note, 30) == "Warning: gemma3:270m needs\nabout 4.7 GB at num_ctx 8192,\nmore than the budget"
    assert wrap_words("  a b c d e f g\n/a/path/longer/than/the/width ok", 8) == (
        "  a b c\n  d e f\n  g\n/a/path/longer/than/the/width\nok")
    assert wrap_words("fits\nas is", 8) == "fits\nas is"


def test_notes_wrap_at_word_boundaries_on_a_terminal(daemon: Daemon, tmp_path: Path, terminal) -> None:
    daemon.cli("import", str(write_tiny_gguf(tmp_path / "plain.gguf", chat_template=None)), "--name", "plain")
    status, _ = daemon.request("POST", "/api/create", {"model": "plain8", "from": "plain", "stream": False,
                                                       "parameters": {"num_predict": 8}})
    assert status == 200
    term = terminal("run", "plain8", "hi")
    assert term.wait() == 0
    note = term.output[:term.output.index(")") + 1]
    assert note.startswith("(plain8 has no chat template") and "\r\n" in note
    lines = note.split("\r\n")
    assert all(len(line) <= 80 for line in lines), lines
    # Every break is where a space was: joined with spaces, the lines give the note back.
    assert " ".join(lines) == ("(plain8 has no chat template, so it continues the prompt as plain text; "
                               "`r1 create` with a TEMPLATE line makes it chat)")
