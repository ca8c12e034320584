"""The reasoning splitter: every case gives the same split however the stream is cut."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import pytest

from r1.daemon.reasoning import (
    CLOSE_TAG,
    OPEN_TAG,
    Phase,
    Piece,
    ThinkSplitter,
    split_text,
    template_opens_think,
)

pytestmark = pytest.mark.unit  # the fast lane (docs/development.md)

# (id, output, opened, thinking, content, unterminated)
CASES = [
    ("deepseek", "<think>\nLet me think.\n</think>\n\nThe answer is 4.", False, "Let me think.", "The answer is 4.", False),
    ("leading-space", "  \n<think>a</think>b", False, "a", "b", False),
    ("crlf", "<think>\r\nA\r\n</think>\r\n\r\nB", False, "A", "B", False),
    ("inner-whitespace-kept", "<think>line1\n\nline2  \n</think>x", False, "line1\n\nline2", "x", False),
    ("empty-thinking", "<think>\n\n</think>\n\nAnswer", False, "", "Answer", False),
    ("tight-empty", "<think></think>Answer", False, "", "Answer", False),
    ("no-answer", "<think>only this</think>\n\n", False, "only this", "", False),
    ("later-think-is-content", "Hello <think>x</think> world", False, "", "Hello <think>x</think> world", False),
    ("tags-in-answer", "<think>a</think>\n\nSee </think> and <think> here", False, "a", "See </think> and <think> here", False),
    ("answer-trailing-space-kept", "<think>a</think>b \n", False, "a", "b \n", False),
    ("not-a-tag-thinking", "<thinking>hi", False, "", "<thinking>hi", False),
    ("lt-in-thinking", "<think>a < b and </thinking> too</think>ok", False, "a < b and </thinking> too", "ok", False),
    ("broken-close", "<think>a </x</think>b", False, "a </x", "b", False),
    ("plain", "Plain answer.", False, "", "Plain answer.", False),
    ("plain-verbatim", "\n\nPlain  ", False, "", "\n\nPlain  ", False),
    ("plain-lt", "2 < 3 and <b>bold</b> <", False, "", "2 < 3 and <b>bold</b> <", False),
    ("plain-partial-open", "  <thi", False, "", "  <thi", False),
    ("empty", "", False, "", "", False),
    ("whitespace-only", " \n", False, "", " \n", False),
    ("unterminated", "<think>\nstill going...\n", False, "still going...", "", True),
    ("unterminated-partial-close", "<think>abc</thi", False, "abc</thi", "", True),
    ("unterminated-empty", "<think>", False, "", "", True),
    ("opened", "Reasoning...\n</think>\n\nAnswer", True, "Reasoning...", "Answer", False),
    ("opened-repeats-open", "<think>\nReasoning</think>Answer", True, "Reasoning", "Answer", False),
    ("opened-repeats-open-after-space", "\n<think>\n\nR</think>A", True, "R", "A", False),
    ("opened-later-open-is-thinking", "R <think> x</think>A", True, "R <think> x", "A", False),
    ("opened-empty", "\n</think>\n\nA", True, "", "A", False),
    ("opened-lt", "<b> is bold</think>ok", True, "<b> is bold", "ok", False),
    ("opened-unterminated", "thinking forever \n", True, "thinking forever", "", True),
    ("opened-nothing", "", True, "", "", True),
    ("opened-partial-open-at-end", "<thi", True, "<thi", "", True),
    (
        "unicode",
        "<think>\nEl año pasó… ¿qué? 🤔 思考中\n</think>\n\nRespuesta: 你好 ✅ señor",
        False,
        "El año pasó… ¿qué? 🤔 思考中",
        "Respuesta: 你好 ✅ señor",
        False,
    ),
    (
        "deepseek-r1-spanish",
        "Vamos a ver: 2, 3, 6, 120...\n</think>\n\n**Respuesta:** (120 / 6 + 2) * 3 + ... ",
        True,
        "Vamos a ver: 2, 3, 6, 120...",
        "**Respuesta:** (120 / 6 + 2) * 3 + ... ",
        False,
    ),
]


def run(pieces: Iterable[str], opened: bool) -> tuple[str, str, bool]:
    splitter = ThinkSplitter(opened=opened)
    out = [splitter.feed(p) for p in pieces]
    out.append(splitter.finish())
    return "".join(p.thinking for p in out), "".join(p.content for p in out), splitter.unterminated


def cuts(text: str) -> Iterable[list[str]]:
    """The text whole, one character at a time, and cut at every point into two and three pieces."""
    yield [text]
    yield list(text)
    for i in range(len(text) + 1):
        yield [text[:i], text[i:]]
        for j in range(i, len(text) + 1):
            yield [text[:i], text[i:j], text[j:]]


@pytest.mark.parametrize("text, opened, thinking, content, unterminated", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_cut_gives_the_same_split(text: str, opened: bool, thinking: str, content: str, unterminated: bool) -> None:
    expected = (thinking, content, unterminated)
    for pieces in cuts(text):
        assert run(pieces, opened) == expected, pieces
    assert split_text(text, opened=opened) == (thinking, content)


@pytest.mark.parametrize("text, opened", [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_only_whitespace_and_a_partial_tag_are_held(text: str, opened: bool) -> None:
    """After each character, what finish() would still release is whitespace plus part of a tag, never more."""
    splitter = ThinkSplitter(opened=opened)
    for ch in text:
        splitter.feed(ch)
        rest = copy.deepcopy(splitter).finish()
        for held in (rest.thinking, rest.content):
            tail = held.lstrip()
            assert len(tail) < len(CLOSE_TAG) and (OPEN_TAG.startswith(tail) or CLOSE_TAG.startswith(tail)), (text, held)


def test_partial_tags_are_held_until_known() -> None:
    s = ThinkSplitter()
    assert s.feed("  <th") == Piece()
    assert s.phase is Phase.START
    assert s.feed("ink>\n") == Piece()
    assert s.in_thinking
    assert s.feed("abc") == Piece(thinking="abc")
    assert s.feed(" </th") == Piece()  # might close: the space would be trimmed
    assert s.feed("x") == Piece(thinking=" </thx")  # it did not
    assert s.feed(" \n") == Piece()
    assert s.feed("d") == Piece(thinking=" \nd")
    assert s.feed("</") == Piece()
    assert s.feed("think") == Piece()
    assert s.feed(">\n\n") == Piece()
    assert s.phase is Phase.CONTENT
    assert s.feed("Hi") == Piece(content="Hi")
    assert s.feed(" <th") == Piece(content=" <th")  # tags in the answer are text: nothing held
    assert s.finish() == Piece()
    assert not s.unterminated


def test_a_think_tag_after_text_is_content_and_is_not_held() -> None:
    s = ThinkSplitter()
    assert s.feed("Hello <th") == Piece(content="Hello <th")
    assert s.feed("ink>x</think>") == Piece(content="ink>x</think>")
    assert s.finish() == Piece()
    assert not s.unterminated


def test_opened_stream_starts_in_thinking() -> None:
    s = ThinkSplitter(opened=True)
    assert s.in_thinking
    assert s.feed("\n") == Piece()
    assert s.feed("<") == Piece()  # could be a repeated <think>, or </think>
    assert s.feed("think>") == Piece()  # the repeated opening tag is dropped
    assert s.feed("\nVamos") == Piece(thinking="Vamos")


def test_long_thinking_streams_incrementally() -> None:
    s = ThinkSplitter(opened=True)
    released = []
    for i in range(500):
        piece = s.feed(f"step {i} ")
        released.append(piece.thinking)
        assert piece.content == ""
    # Each piece releases at least its own words; only the trailing space waits.
    assert all(released)
    assert "".join(released) == " ".join(f"step {i}" for i in range(500))
    assert s.feed("\n</think>\n\nDone") == Piece(content="Done")
    assert s.finish() == Piece()


def test_unterminated_only_after_finish() -> None:
    s = ThinkSplitter()
    s.feed("<think>never closed ")
    assert s.in_thinking and not s.unterminated
    assert s.finish() == Piece()  # the held space is trailing whitespace of the thinking
    assert s.unterminated
    assert s.finish() == Piece()
    with pytest.raises(RuntimeError):
        s.feed("more")


def test_custom_tags() -> None:
    s = ThinkSplitter(open_tag="<reasoning>", close_tag="</reasoning>")
    out = [s.feed(p) for p in ("<reas", "oning>why</reas", "oning>\nso")]
    out.append(s.finish())
    assert "".join(p.thinking for p in out) == "why"
    assert "".join(p.content for p in out) == "so"
    with pytest.raises(ValueError):
        ThinkSplitter(close_tag="")


def test_piece_truthiness() -> None:
    assert not Piece()
    assert Piece(thinking="a") and Piece(content="b")


@pytest.mark.parametrize(
    "prompt, opens",
    [
        ("<｜User｜>hola<｜Assistant｜><think>\n", True),
        ("<|im_start|>assistant\n<think>\n\n", True),
        ("<|im_start|>assistant\n<think>", True),
        ("<｜User｜>hola<｜Assistant｜>", False),
        ("<|im_start|>assistant\n<think>\n\n</think>\n\n", False),  # Qwen3 with thinking off
        ("Explain <think> tags.\n<|im_start|>assistant\n", False),
        ("", False),
    ],
)
def test_template_opens_think(prompt: str, opens: bool) -> None:
    assert template_opens_think(prompt) is opens
