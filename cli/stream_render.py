"""Showing an answer as it streams: a spinner while the model loads, word wrapping, the dimmed
thinking block, `--verbose` stats."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TextIO

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import Chunk

DIM, RESET = "\033[2m", "\033[0m"
SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"  # Ollama's braille spinner
ERASE_LINE = "\r\033[K"


class Spinner:
    """Braille frames on stderr, from `start()` until `stop()` (the first token): a load shows it is
    under way. Silent off a terminal. It draws from a thread, since the main one blocks on the socket."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Spinner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.thread is None and self.stream.isatty():
            self.stopped.clear()
            self.thread = threading.Thread(target=self._spin, name="spinner", daemon=True)
            self.thread.start()

    def _spin(self) -> None:
        frame = 0
        while True:
            self.stream.write(f"\r{SPINNER_FRAMES[frame % len(SPINNER_FRAMES)]} ")
            self.stream.flush()
            frame += 1
            if self.stopped.wait(self.interval):
                return

    def stop(self) -> None:
        """Stop and erase the spinner (at once when it is not running); the line is left empty."""
        if self.thread is None:
            return
        self.stopped.set()
        self.thread.join()
        self.thread = None  # only once joined: a Ctrl-C inside join() leaves it for the next stop()
        self.stream.write(ERASE_LINE)
        self.stream.flush()


class WordWrap:
    """Writes streamed text, wrapped at `width` columns without breaking words (width None: as is).

    Pieces arrive cut anywhere, so the word being written is held back, with the spaces
    before it: where a line wraps they are dropped. A word longer than a line is broken.
    """

    def __init__(self, write: Callable[[str], object], width: int | None) -> None:
        self.write = write
        self.width = width if width is None else max(width, 2)
        self.column = 0  # where the next character lands, counting what is written only
        self.spaces = 0
        self.word = ""

    def feed(self, text: str) -> None:
        if self.width is None:
            if text:
                self.write(text)
                self.column = 0 if text.endswith("\n") else self.column + len(text)
            return
        for char in text:
            if char == "\n":
                self._flush()
                self.write("\n")
                self.column = 0
            elif char == " ":
                if self.word:
                    self._flush()
                self.spaces += 1
            else:
                if self.column + self.spaces + len(self.word) >= self.width:
                    if self.column:  # wrap: the word goes to the next line
                        self.write("\n")
                        self.column = 0
                    self.spaces = 0  # spaces at a wrap are dropped
                    if len(self.word) >= self.width:  # longer than a line: break it
                        self.write(self.word + "\n")
                        self.word = ""
                self.word += char

    def _flush(self) -> None:
        self.write(" " * self.spaces + self.word)
        self.column += self.spaces + len(self.word)
        self.spaces, self.word = 0, ""

    def style(self, code: str) -> None:
        """An escape sequence, placed after the text fed so far; it takes no columns."""
        self._flush()
        self.write(code)

    def drop_held(self) -> None:
        """Forget the word held back and the spaces before it: never shown, they stay unshown (Ctrl-C)."""
        self.spaces, self.word = 0, ""

    def end_line(self) -> None:
        """Write what is held and end the line, unless it is empty."""
        self._flush()
        if self.column:
            self.write("\n")
            self.column = 0


class Answer:
    """One streamed answer: thinking (if shown) under a header, then the content.

    With `dim`, thinking is dimmed as on a terminal; without, it is plain text.
    """

    def __init__(self, wrap: WordWrap, *, show_thinking: bool, dim: bool) -> None:
        self.wrap = wrap
        self.show_thinking = show_thinking
        self.dim = dim
        self.thinking_open = False
        self.content_parts: list[str] = []

    def _style(self, code: str) -> None:
        if self.dim:
            self.wrap.style(code)

    def thinking(self, text: str) -> None:
        if not text or not self.show_thinking:
            return
        if not self.thinking_open:
            self.thinking_open = True
            self._style(DIM)
            self.wrap.feed("Thinking...\n")
        self.wrap.feed(text)

    def content(self, text: str) -> None:
        if not text:
            return
        self._close_thinking()
        self.content_parts.append(text)
        self.wrap.feed(text)

    def _close_thinking(self) -> None:
        if self.thinking_open:
            self.thinking_open = False
            self.wrap.end_line()
            self.wrap.feed("...done thinking.\n\n")
            self._style(RESET)

    def finish(self) -> None:
        """End the answer on a line of its own, and the dim style if a stop cut the thinking."""
        if self.thinking_open:
            self.thinking_open = False
            self._style(RESET)
        self.wrap.end_line()

    @property
    def text(self) -> str:
        return "".join(self.content_parts)


def go_duration(ns: int) -> str:
    """A duration in nanoseconds as Go prints a time.Duration (so as `ollama run --verbose` shows
    it): 850ns, 12.5µs, 3.2045ms, 1.5s, 2m3.25s, 1h0m5s."""
    if ns < 1000:
        return f"{ns}ns" if ns else "0s"
    if ns < 10**6:
        return f"{ns // 1000}{_fraction(ns % 1000, 3)}µs"
    if ns < 10**9:
        return f"{ns // 10**6}{_fraction(ns % 10**6, 6)}ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = f"{rest // 10**9}{_fraction(rest % 10**9, 9)}s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    return f"{minutes}m{seconds}" if minutes else seconds


def _fraction(value: int, digits: int) -> str:
    text = f"{value:0{digits}d}".rstrip("0")
    return f".{text}" if text else ""


def stats(done: Chunk) -> list[str]:
    """The `--verbose` lines for a final stream event, as Ollama prints them (fields that are 0 or absent are left out)."""
    total, load, prompt_count, prompt_ns, count, eval_ns = (int(value or 0) for value in (
        done.get("total_duration"), done.get("load_duration"), done.get("prompt_eval_count"),
        done.get("prompt_eval_duration"), done.get("eval_count"), done.get("eval_duration")))
    lines = []
    if total:
        lines.append(f"total duration:       {go_duration(total)}")
    if load:
        lines.append(f"load duration:        {go_duration(load)}")
    if prompt_count:
        lines.append(f"prompt eval count:    {prompt_count} token(s)")
    if prompt_ns:
        lines.append(f"prompt eval duration: {go_duration(prompt_ns)}")
    if prompt_ns and prompt_count:  # a remote engine that counts no prompt has no rate to show
        lines.append(f"prompt eval rate:     {prompt_count / (prompt_ns / 1e9):.2f} tokens/s")
    if count:
        lines.append(f"eval count:           {count} token(s)")
    if eval_ns:
        lines.append(f"eval duration:        {go_duration(eval_ns)}")
        lines.append(f"eval rate:            {count / (eval_ns / 1e9):.2f} tokens/s")
    if done.get("tokens_counted_by_r1"):
        lines.append("token counts:         counted by r1 (the remote engine gave none)")
    if done.get("cost") is not None:
        lines.append(f"cost:                 ${done['cost']:.6f}")
    return lines
