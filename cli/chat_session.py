"""One `r1 run` session: its settings (flags, then /set) and how it asks the daemon. A spinner on stderr
shows while the model loads; answers stream to stdout, word-wrapped on a terminal; thinking shows
dimmed above them.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable

from .api import Api, Json
from .stream_render import Answer, Spinner, WordWrap, stats

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import Chunk, Message, ModelInfo, Stream


def _keep_alive(text: str) -> object:
    """A number is seconds; anything else ("5m", "1h30m") goes to the daemon as a duration."""
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else number


class Session:
    """The settings of one `r1 run` (flags, then /set) and how it sends a chat request."""

    def __init__(self, api: Api, model: str, *, think: bool | None, hide_thinking: bool, verbose: bool,
                 wordwrap: bool, format: str | None, keep_alive: str | None) -> None:
        self.api = api
        self.model = model
        self.think = think
        self.hide_thinking = hide_thinking
        self.verbose = verbose
        self.wordwrap = wordwrap
        self.format = format
        self.keep_alive = None if keep_alive is None else _keep_alive(keep_alive)
        self.options: Json = {}

    def answer(self, messages: list[Json]) -> str:
        """Stream the model's reply to `messages` to stdout; its content, without the thinking."""
        return self._stream("/api/chat", {"messages": messages}, lambda event: event.get("message") or {})

    def complete(self, prompt: str) -> str:
        """Stream the model's continuation of a plain prompt (a model with no chat template)."""
        return self._stream("/api/generate", {"prompt": prompt},
                            lambda event: {"content": event.get("response", ""), "thinking": event.get("thinking", "")})

    def _stream(self, path: str, request: Json, message_of: Callable[[Chunk], Message]) -> str:
        body: Json = {"model": self.model, **request, "stream": True}
        for key, value in (("think", self.think), ("format", self.format), ("keep_alive", self.keep_alive)):
            if value is not None:
                body[key] = value
        if self.options:
            body["options"] = dict(self.options)
        tty = sys.stdout.isatty()
        width = shutil.get_terminal_size().columns if tty and self.wordwrap else None
        # Off a terminal, thinking is shown only when asked for: a pipe wants the answer.
        show = not self.hide_thinking and (tty or self.think is True)
        answer = Answer(WordWrap(sys.stdout.write, width), show_thinking=show, dim=tty)
        done: Chunk = {}
        spinner = Spinner()  # until the first event: the model may be loading
        spinner.start()
        events: Stream[Chunk] = self.api.stream("POST", path, body)
        try:
            for event in events:
                spinner.stop()
                message = message_of(event)
                answer.thinking(message.get("thinking") or "")
                answer.content(message.get("content") or "")
                sys.stdout.flush()
                if event.get("done"):
                    done = event
        except KeyboardInterrupt:
            answer.wrap.drop_held()  # the answer ends where the screen shows it end, not one word later
            raise
        finally:
            spinner.stop()
            events.close()  # on Ctrl-C: the daemon cancels the generation when the connection closes
            answer.finish()
            sys.stdout.flush()
        if done.get("thinking_unfinished"):
            print(f"({self.model} stopped while still thinking: all of it was reasoning, with no answer yet; "
                  "a higher num_predict or num_ctx gives it room)", file=sys.stderr, flush=True)
        if self.verbose and done:
            print("\n".join(stats(done)), file=sys.stderr, flush=True)
        return answer.text


def is_embedding_only(info: ModelInfo) -> bool:
    """A model that embeds and cannot generate (/api/show's capabilities say so)."""
    capabilities = info.get("capabilities") or []
    return "embedding" in capabilities and "completion" not in capabilities


def load_model(api: Api, name: str, keep_alive: object) -> None:
    """Load `name` (a generate request with no prompt), with the spinner showing meanwhile."""
    body: Json = {"model": name, "stream": False}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    with Spinner():
        api("POST", "/api/generate", body)
