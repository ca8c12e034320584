"""Split a model's `<think>…</think>` reasoning from its answer, token piece by token piece.

DeepSeek-R1 (and its distills, Qwen3, …) write their reasoning first, inside a think
block, then the answer. The API returns the two apart (`message.thinking` / `thinking`
in `/api`, `reasoning_content` in `/v1`), and it streams, so a tag may arrive cut
anywhere (`<th` + `ink>`, or one character at a time).

Rules (the tests pin each one):

* Only a `<think>` at the very start of the output (after optional whitespace) opens
  reasoning. A `<think>` later in the answer is content: models quote tags, and a
  block in the middle of an answer is not what these models emit.
* With `opened=True` the prompt already ended with `<think>` (DeepSeek-R1 distill
  templates do that), so the output starts inside the reasoning. A model that writes
  `<think>` again at its start anyway has that tag dropped, not shown as thinking.
* The first `</think>` ends the reasoning; any later `</think>` is content.
* Whitespace is trimmed around the reasoning and before the answer: leading and
  trailing whitespace of the thinking, and the answer's leading whitespace after
  `</think>` (DeepSeek emits "</think>\\n\\n"). Output with no think block is
  passed through untouched.
* Nothing is held back but what may still change: a partial tag, and a run of
  whitespace whose fate (trimmed or kept) depends on what comes next. So a long
  reasoning streams out as it is written, and the held text is bounded by one tag
  plus one whitespace run.
* A stream that ends inside the reasoning was all thinking; `unterminated` says so,
  and the caller decides how to show it.

Nothing here knows HTTP or models.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


@dataclass(frozen=True)
class Piece:
    """What a feed or finish released; either field may be empty."""

    thinking: str = ""
    content: str = ""

    def __bool__(self) -> bool:
        return bool(self.thinking or self.content)


class Phase(Enum):
    START = "start"  # nothing but whitespace (or part of an opening tag) seen yet
    THINKING = "thinking"
    CONTENT = "content"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper start of `tag` (0 if none)."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkSplitter:
    """Feed the model's text as it comes; each call returns what can be shown now."""

    def __init__(self, *, opened: bool = False, open_tag: str = OPEN_TAG, close_tag: str = CLOSE_TAG) -> None:
        if not open_tag or not close_tag:
            raise ValueError("think tags must not be empty")
        self._open_tag = open_tag
        self._close_tag = close_tag
        self._phase = Phase.THINKING if opened else Phase.START
        # A model may repeat the opening tag the template already wrote: drop it once.
        self._may_reopen = opened
        # Leading whitespace of the thinking or of the answer is still being dropped.
        self._trim_start = opened
        self._held = ""
        self._finished = False

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def in_thinking(self) -> bool:
        return self._phase is Phase.THINKING

    @property
    def unterminated(self) -> bool:
        """After finish(): the stream ended inside the reasoning, so all of it was thinking."""
        return self._finished and self._phase is Phase.THINKING

    def feed(self, text: str) -> Piece:
        if self._finished:
            raise RuntimeError("feed() after finish()")
        thinking: list[str] = []
        content: list[str] = []
        buf = self._held + text
        self._held = ""
        # Each `continue` moves to a later phase or drops a tag, so the loop runs a few times at most.
        while True:
            if self._phase is Phase.START:
                head = buf.lstrip()
                if self._open_tag.startswith(head) and len(head) < len(self._open_tag):
                    self._held = buf  # whitespace, maybe the start of <think>: not known yet
                    break
                if head.startswith(self._open_tag):
                    self._phase = Phase.THINKING
                    self._trim_start = True
                    buf = head[len(self._open_tag):]
                    continue
                self._phase = Phase.CONTENT  # no think block: the text is the answer, as is
                continue
            if self._phase is Phase.THINKING:
                if self._trim_start:
                    buf = buf.lstrip()
                    if self._may_reopen:
                        if self._open_tag.startswith(buf) and len(buf) < len(self._open_tag):
                            self._held = buf
                            break
                        self._may_reopen = False
                        if buf.startswith(self._open_tag):
                            buf = buf[len(self._open_tag):]
                            continue
                    if not buf:
                        break
                    self._trim_start = False
                end = buf.find(self._close_tag)
                if end >= 0:
                    thinking.append(buf[:end].rstrip())
                    self._phase = Phase.CONTENT
                    self._trim_start = True
                    buf = buf[end + len(self._close_tag):]
                    continue
                # Hold a partial </think> and the whitespace before it: both vanish if it closes.
                body = buf[: len(buf) - _partial_suffix(buf, self._close_tag)]
                keep = len(body.rstrip())
                thinking.append(buf[:keep])
                self._held = buf[keep:]
                break
            if self._trim_start:
                buf = buf.lstrip()
                if not buf:
                    break
                self._trim_start = False
            content.append(buf)
            break
        return Piece("".join(thinking), "".join(content))

    def finish(self) -> Piece:
        """End of stream: release what was held back for a tag that never came."""
        if self._finished:
            return Piece()
        self._finished = True
        held, self._held = self._held, ""
        if self._phase is Phase.THINKING:
            return Piece(thinking=held.rstrip())
        return Piece(content=held)


def split_text(text: str, *, opened: bool = False) -> tuple[str, str]:
    """(thinking, content) of a whole response, by the same rules as a stream."""
    splitter = ThinkSplitter(opened=opened)
    first, last = splitter.feed(text), splitter.finish()
    return first.thinking + last.thinking, first.content + last.content


def template_opens_think(rendered_prompt: str, *, open_tag: str = OPEN_TAG) -> bool:
    """True when the chat template left the think block open at the end of the prompt."""
    return rendered_prompt.rstrip().endswith(open_tag)
