"""`r1 run`'s interactive chat: the `>>> ` prompt, the conversation so far, and Ollama's slash commands
(/set, /show, /load, /save, /clear, /bye), which change the session or act on it.
"""

from __future__ import annotations

import contextlib

from ..daemon.options import OPTION_TYPES
from .api import ApiFailure, Json
from .chat_session import Session, is_embedding_only, load_model
from .images import user_message
from .modelfile import parameter_value

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import ModelInfo

HELP = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command

Use \"\"\" to begin a multi-line message."""

SET_HELP = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking

Parameters: """ + ", ".join(OPTION_TYPES)

SHOW_HELP = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template"""

EXIT_HINT = "Use Ctrl + d or /bye to exit."
QUOTES = '"""'
# /set's switches: the session attribute each sets, and to what.
SWITCHES = {"think": ("think", True), "nothink": ("think", False), "verbose": ("verbose", True),
            "quiet": ("verbose", False), "wordwrap": ("wordwrap", True), "nowordwrap": ("wordwrap", False)}


def show_info(info: ModelInfo, options: Json) -> None:
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


def _parameters(info: ModelInfo, options: Json) -> str:
    """The model's parameters, then those /set in this session, one `name value` line each."""
    pairs = [line.split(None, 1) for line in (info.get("parameters") or "").splitlines() if line.strip()]
    pairs += [[name, str(value)] for name, value in options.items()]
    return "\n".join(f"    {name:<20}{' '.join(value)}" for name, *value in pairs)


class Chat:
    """The interactive loop: the conversation so far, and the slash commands that change the session."""

    def __init__(self, session: Session, info: ModelInfo) -> None:
        self.session = session
        self.info = info
        self.messages: list[Json] = []  # a system message set with /set system comes first

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
                    if not self.command(text):
                        break
                elif text.strip():
                    self.send(text)
        finally:
            with contextlib.suppress(OSError):
                readline.write_history_file(history)
                history.chmod(0o600)  # what you typed is yours alone

    def read(self) -> str | None:
        """The next input: a line, or the lines between \"\"\" marks (also after `/set system `); "" after
        Ctrl-C; None at EOF."""
        import readline

        try:
            line = input(">>> ")
            command, quoted, rest = line.partition(QUOTES)
            if not quoted or command not in ("", "/set system "):
                return line
            lines = [rest]
            while not lines[-1].endswith(QUOTES):
                lines.append(input("... "))
            lines[-1] = lines[-1][:-len(QUOTES)]
            return command + "\n".join(lines)
        except KeyboardInterrupt:
            # As ollama: a hint when the prompt was empty; any text typed is dropped.
            print("\n" + EXIT_HINT if not readline.get_line_buffer() else "")
            return ""
        except EOFError:
            print()
            return None

    def send(self, text: str) -> None:
        """One turn; a reply cut by Ctrl-C or an error leaves the conversation as it was."""
        self.messages.append(user_message(text, "vision" in (self.info.get("capabilities") or [])))
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

    def command(self, text: str) -> bool:
        """Run one /command; False to end the chat."""
        name, _, rest = text.partition(" ")
        args = rest.split()
        if name in ("/bye", "/exit"):
            return False
        if name == "/clear":
            self.messages = [m for m in self.messages if m["role"] == "system"]  # the system message stays
            print("Cleared session context")
        elif name == "/set" and args[:1] == ["system"]:
            self.set_system(rest.partition("system")[2].strip())
        elif name == "/set":
            self.set(args)
        elif name == "/show":
            self.show(args)
        elif name == "/load":
            self.load(args)
        elif name == "/save":
            self.save(args)
        elif name in ("/?", "/help"):
            print({"set": SET_HELP, "/set": SET_HELP, "show": SHOW_HELP, "/show": SHOW_HELP}.get(args[0] if args else "", HELP))
        else:
            print(f"Unknown command '{name}'. Type /? for help")
        return True

    @property
    def system(self) -> str | None:
        """The system message set in this session, if any."""
        first = self.messages[0] if self.messages else {}
        content = first.get("content")
        return content if first.get("role") == "system" and isinstance(content, str) else None

    def set_system(self, text: str) -> None:
        """`/set system TEXT`: the system message of the turns that follow (replacing the one set before)."""
        if not text:
            print(SET_HELP)
            return
        if self.system is not None:
            self.messages[0] = {"role": "system", "content": text}
        else:
            self.messages.insert(0, {"role": "system", "content": text})
        print("Set system message.")

    def set(self, args: list[str]) -> None:
        session = self.session
        if args and args[0] in SWITCHES:
            setattr(session, *SWITCHES[args[0]])
            print(f"Set '{args[0]}' mode.")
        elif args[:1] == ["format"]:
            if args[1:] != ["json"]:
                print("Invalid or missing format. For 'json' mode use '/set format json'")
                return
            session.format = "json"
            print("Set format to 'json' mode.")
        elif args == ["noformat"]:
            session.format = None
            print("Disabled format.")
        elif args[:1] == ["parameter"] and len(args) >= 3:
            self.set_parameter(args[1].lower(), args[2:])
        elif args[:1] == ["parameter"]:
            print("Usage: /set parameter NAME VALUE ...\nParameters: " + ", ".join(OPTION_TYPES))
        elif args:
            print(f"Unknown command '/set {args[0]}'. Type /? for help")
        else:
            print(SET_HELP)

    def set_parameter(self, name: str, values: list[str]) -> None:
        try:
            value = [parameter_value(name, v) for v in values] if name == "stop" else parameter_value(name, " ".join(values))
        except ValueError as exc:
            print(f"Couldn't set parameter: {exc}")
            return
        self.session.options[name] = value
        print(f"Set parameter '{name}' to '{', '.join(values)}'")

    def show(self, args: list[str]) -> None:
        what = args[0] if args else ""
        if what == "info":
            show_info(self.info, self.session.options)
        elif what == "parameters":
            print(_parameters(self.info, self.session.options) or "No parameters are set for this model.")
        elif what == "system" and self.system is not None:
            print(self.system)
        elif what in ("license", "modelfile", "system", "template"):
            print(str(self.info.get(what) or "") or f"This model has no {what}.")
        else:
            print(SHOW_HELP)

    def load(self, args: list[str]) -> None:
        """`/load MODEL`: chat with another model from here on, starting a new conversation (as Ollama
        does); the session's settings (/set parameter, format, modes) stay."""
        if len(args) != 1:
            print("Usage:\n  /load <modelname>")
            return
        api, name = self.session.api, args[0]
        try:
            info: ModelInfo = api.read("POST", "/api/show", {"model": name})
        except ApiFailure as exc:
            print(f"Couldn't find model '{name}'" if exc.status == 404 else f"error: {exc}")
            return
        if is_embedding_only(info):
            print(f"{name} is an embedding model: it cannot chat")
            return
        print(f"Loading model '{name}'")
        try:
            load_model(api, name, self.session.keep_alive)
        except KeyboardInterrupt:  # the load is called off, and the switch with it
            print()
            return
        except ApiFailure as exc:
            print(f"error: {exc}")
            return
        self.session.model, self.info, self.messages = name, info, []

    def save(self, args: list[str]) -> None:
        """`/save MODEL`: a new model made from this one, with the session's system message, parameters
        and conversation (POST /api/create, as Ollama's /save)."""
        if len(args) != 1:
            print("Usage:\n  /save <modelname>")
            return
        body: Json = {"model": args[0], "from": self.session.model, "stream": False}
        if self.system is not None:
            body["system"] = self.system
        if self.session.options:
            body["parameters"] = dict(self.session.options)
        if self.messages:
            body["messages"] = list(self.messages)
        try:
            self.session.api("POST", "/api/create", body)
        except ApiFailure as exc:
            print(f"error: {exc}")
            return
        print(f"Created new model '{args[0]}'")
