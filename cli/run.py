"""`r1 run`: one answer to a prompt, or a chat at a `>>> ` prompt, as `ollama run` does.

The model is fetched first when the store lacks it (imported if bundled, else pulled).
Answers stream to stdout, word-wrapped on a terminal; thinking shows dimmed above them.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable

from ..daemon.options import OPTION_TYPES
from .api import Api, ApiFailure, Json
from .errors import CliError
from .fetch import ensure_model, warn_if_too_large
from .modelfile import parameter_value
from .render import say
from .stream_render import Answer, WordWrap, stats

HELP = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command

Use \"\"\" to begin a multi-line message."""

SET_HELP = """Available Commands:
  /set parameter ...     Set a parameter
  /set think             Enable thinking
  /set nothink           Disable thinking
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap

Parameters: """ + ", ".join(OPTION_TYPES)

SHOW_HELP = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template"""

EXIT_HINT = "Use Ctrl + d or /bye to exit."


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
                            lambda event: {"content": event.get("response"), "thinking": event.get("thinking")})

    def _stream(self, path: str, request: Json, message_of: Callable[[Json], Json]) -> str:
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
        done: Json = {}
        events = self.api.stream("POST", path, body)
        try:
            for event in events:
                message = message_of(event)
                answer.thinking(message.get("thinking") or "")
                answer.content(message.get("content") or "")
                sys.stdout.flush()
                if event.get("done"):
                    done = event
        finally:
            events.close()  # on Ctrl-C: the daemon cancels the generation when the connection closes
            answer.finish()
            sys.stdout.flush()
        if done.get("thinking_unfinished"):
            print(f"({self.model} stopped while still thinking: all of it was reasoning, with no answer yet; "
                  "a higher num_predict or num_ctx gives it room)", file=sys.stderr, flush=True)
        if self.verbose and done:
            print("\n".join(stats(done)), file=sys.stderr, flush=True)
        return answer.text


def one_shot(session: Session, prompt: str, chat: bool) -> None:
    """One answer; a model with no chat template continues the prompt as written, as in Ollama."""
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        if piped.strip():
            prompt = f"{piped.rstrip()}\n\n{prompt}" if prompt else piped
    if not prompt.strip():
        raise CliError("nothing to send: give a PROMPT or pipe text to stdin")
    if chat:
        session.answer([{"role": "user", "content": prompt}])
    else:
        say(f"({session.model} has no chat template, so it continues the prompt as plain text; "
            "`r1 create` with a TEMPLATE line makes it chat)")
        session.complete(prompt)


def show_info(info: Json, options: Json) -> None:
    """`/show info`: the model's main facts, capabilities, and the parameters set."""
    arch = info["model_info"].get("general.architecture") or "-"
    facts = (
        ("architecture", arch),
        ("parameters", info["details"].get("parameter_size") or "-"),
        ("context length", info["model_info"].get(f"{arch}.context_length", "-")),
        ("quantization", info["details"].get("quantization_level") or "-"),
    )
    print("  Model")
    for label, value in facts:
        print(f"    {label:<20}{value}")
    print("\n  Capabilities")
    for capability in info.get("capabilities") or []:
        print(f"    {capability}")
    if parameters := _parameters(info, options):
        print("\n  Parameters")
        print(parameters)
    print()


def _parameters(info: Json, options: Json) -> str:
    """The model's parameters, then those /set in this session, one `name value` line each."""
    pairs = [line.split(None, 1) for line in (info.get("parameters") or "").splitlines() if line.strip()]
    pairs += [[name, str(value)] for name, value in options.items()]
    return "\n".join(f"    {name:<20}{' '.join(value)}" for name, *value in pairs)


class Chat:
    """The interactive loop: the conversation so far, and the slash commands that change the session."""

    def __init__(self, session: Session, info: Json) -> None:
        self.session = session
        self.info = info
        self.messages: list[Json] = []

    def run(self) -> None:
        import readline  # line editing and history for input(); only the chat needs it

        history = self.session.api.settings.home / "history"
        with contextlib.suppress(OSError):
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.read_history_file(history)
        readline.set_history_length(1000)
        try:
            while (text := self.read()) is not None:
                if text.startswith("/"):
                    if not self.command(text.split()):
                        break
                elif text.strip():
                    self.send(text)
        finally:
            with contextlib.suppress(OSError):
                readline.write_history_file(history)
                history.chmod(0o600)  # what you typed is yours alone

    def read(self) -> str | None:
        """The next input: a line, or the lines between \"\"\" marks; "" after Ctrl-C; None at EOF."""
        import readline

        try:
            line = input(">>> ")
            if not line.startswith('"""'):
                return line
            lines = [line[3:]]
            while not lines[-1].endswith('"""'):
                lines.append(input("... "))
            lines[-1] = lines[-1][:-3]
            return "\n".join(lines)
        except KeyboardInterrupt:
            # As ollama: a hint when the prompt was empty; any text typed is dropped.
            print("\n" + EXIT_HINT if not readline.get_line_buffer() else "")
            return ""
        except EOFError:
            print()
            return None

    def send(self, text: str) -> None:
        """One turn; a reply cut by Ctrl-C or an error leaves the conversation as it was."""
        self.messages.append({"role": "user", "content": text})
        try:
            reply = self.session.answer(self.messages)
        except KeyboardInterrupt:
            reply = None
        except ApiFailure as exc:
            exc.show()  # click's rendering, as main() shows errors
            reply = None
        if reply is None:
            self.messages.pop()  # the question too: templates expect user and assistant to alternate
        else:
            self.messages.append({"role": "assistant", "content": reply})
        print()

    def command(self, words: list[str]) -> bool:
        """Run one /command; False to end the chat."""
        name, args = words[0], words[1:]
        if name in ("/bye", "/exit"):
            return False
        if name == "/clear":
            self.messages.clear()
            print("Cleared session context")
        elif name == "/set":
            self.set(args)
        elif name == "/show":
            self.show(args)
        elif name in ("/?", "/help"):
            print(HELP)
        else:
            print(f"Unknown command '{name}'. Type /? for help")
        return True

    def set(self, args: list[str]) -> None:
        session = self.session
        flags = {"think": ("think", True), "nothink": ("think", False), "verbose": ("verbose", True),
                 "quiet": ("verbose", False), "wordwrap": ("wordwrap", True), "nowordwrap": ("wordwrap", False)}
        if args and args[0] in flags:
            setattr(session, *flags[args[0]])
            print(f"Set '{args[0]}' mode.")
        elif args[:1] == ["parameter"] and len(args) >= 3:
            name, values = args[1].lower(), args[2:]
            try:
                value = [parameter_value(name, v) for v in values] if name == "stop" else parameter_value(name, " ".join(values))
            except ValueError as exc:
                print(f"Couldn't set parameter: {exc}")
                return
            session.options[name] = value
            print(f"Set parameter '{name}' to '{', '.join(values)}'")
        elif args[:1] == ["parameter"]:
            print("Usage: /set parameter NAME VALUE ...\nParameters: " + ", ".join(OPTION_TYPES))
        else:
            print(SET_HELP)

    def show(self, args: list[str]) -> None:
        what = args[0] if args else ""
        if what == "info":
            show_info(self.info, self.session.options)
        elif what == "parameters":
            print(_parameters(self.info, self.session.options) or "No parameters are set for this model.")
        elif what in ("license", "modelfile", "system", "template"):
            print(self.info.get(what) or f"This model has no {what}.")
        else:
            print(SHOW_HELP)


def run(session: Session, prompt: str) -> None:
    """`r1 run`: fetch the model if the store lacks it, then answer `prompt` (or stdin), or chat."""
    api, name = session.api, session.model
    info = ensure_model(api, name)
    warn_if_too_large({**info, "name": name})
    if prompt or not sys.stdin.isatty():
        one_shot(session, prompt, chat=bool(info.get("template")) or "remote" in info)
        return
    # Load the model before the first prompt, so a model that cannot load says so at once.
    body: Json = {"model": name, "stream": False}
    if session.keep_alive is not None:
        body["keep_alive"] = session.keep_alive
    api("POST", "/api/generate", body)
    Chat(session, info).run()
