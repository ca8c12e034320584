"""`r1 run`: one answer to a prompt, or a chat at a `>>> ` prompt (cli/chat.py), as `ollama run` does;
an embedding model's vector for the text given.

The model is fetched first when the store lacks it (imported if bundled, else pulled).
"""

from __future__ import annotations

import json
import sys

from .api import Json
from .chat import Chat
from .chat_session import Session, is_embedding_only, load_model
from .errors import CliError
from .fetch import ensure_model, warn_if_too_large
from .images import user_message
from .render import say
from .stream_render import Spinner

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import Embeddings


def with_stdin(prompt: str) -> str:
    """The prompt, after the text piped to stdin when there is some (as Ollama joins them)."""
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        if piped.strip():
            prompt = f"{piped.rstrip()}\n\n{prompt}" if prompt else piped
    if not prompt.strip():
        raise CliError("nothing to send: give a PROMPT or pipe text to stdin")
    return prompt


def one_shot(session: Session, prompt: str, chat: bool, vision: bool) -> None:
    """One answer; a model with no chat template continues the prompt as written, as in Ollama. A vision
    model gets the image files the prompt names (cli/images.py)."""
    prompt = with_stdin(prompt)
    if chat:
        session.answer([user_message(prompt, vision)])
    else:
        say(f"({session.model} has no chat template, so it continues the prompt as plain text; "
            "`r1 create` with a TEMPLATE line makes it chat)")
        session.complete(prompt)


def embed(session: Session, prompt: str) -> None:
    """An embedding model's vector for the prompt (and stdin), one JSON array on a line, as `ollama run` prints it."""
    if not prompt and sys.stdin.isatty():
        raise CliError(f"{session.model} is an embedding model: give the text to embed as an argument or on stdin "
                       f'(r1 run {session.model} "your text here")')
    # Without the newline `echo` ends with: piped text embeds as the same text given as an argument.
    body: Json = {"model": session.model, "input": with_stdin(prompt).rstrip("\n")}
    if session.keep_alive is not None:
        body["keep_alive"] = session.keep_alive
    with Spinner():
        answer: Embeddings = session.api.read("POST", "/api/embed", body)
    print(json.dumps(answer["embeddings"][0], separators=(",", ":")))


def run(session: Session, prompt: str) -> None:
    """`r1 run`: fetch the model if the store lacks it, then answer `prompt` (or stdin), or chat."""
    api, name = session.api, session.model
    info = ensure_model(api, name)
    warn_if_too_large(info, name)
    if is_embedding_only(info):
        embed(session, prompt)
    elif prompt or not sys.stdin.isatty():
        one_shot(session, prompt, chat=bool(info.get("template")) or "remote" in info,
                 vision="vision" in (info.get("capabilities") or []))
    else:
        # Load the model before the first prompt, so a model that cannot load says so at once.
        load_model(api, name, session.keep_alive)
        Chat(session, info).run()
