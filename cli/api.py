"""The daemon as commands see it: settings from the environment, API calls that start the
daemon when none answers (unless R1_NO_AUTOSTART), and the daemon's errors as CLI errors.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Generator

from ..daemon.config import ConfigError, Settings
from .client import ApiError, Client, DaemonUnavailable
from .errors import CliError
from .render import say

DAEMON_START_TIMEOUT = 20.0

Json = dict[str, object]

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from typing import Any


class ApiFailure(CliError):
    """The daemon answered with an error (as opposed to not answering at all)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status: 404 for a model the store lacks


def _json_object(answer: object) -> Json:
    """The daemon's answer as the JSON object every route the CLI calls answers with (an empty body: {})."""
    if answer is None:
        return {}
    if not isinstance(answer, dict):
        raise CliError(f"the daemon answered with a JSON {type(answer).__name__}, not an object")
    return answer


def read_alone(client: Client, method: str, path: str) -> Any:
    """A call on `client` alone, starting no daemon, to a route that cli/shapes.py gives a shape: the
    caller names it, as with Api.read."""
    return _json_object(client.request(method, path))


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings.from_env(None, **overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc


def start_daemon(settings: Settings) -> None:
    """Start `python -m r1.daemon` detached, logging to $R1_HOME/daemon.log, and wait until it answers."""
    import subprocess  # only this path needs it; keep the common one quick

    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)  # the daemon keeps it private (store/private.py)
    log_path = settings.home / "daemon.log"
    with open(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "r1.daemon"],
            # The daemon writes its log itself (so SIGHUP can reopen it); stderr catches a crash.
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            env={**os.environ, **settings.as_env(), "R1_LOG_FILE": str(settings.log_file or log_path)},
            start_new_session=True,
        )
    say(f"Started the r1 daemon in the background (pid {process.pid}, log {log_path}).")
    client = Client(settings.socket, timeout=5)
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise CliError("the r1 daemon failed to start:\n" + "\n".join(tail))
        try:
            client.request("GET", "/api/version")
            return
        except DaemonUnavailable:
            time.sleep(0.05)
    raise CliError(f"the r1 daemon did not answer on {settings.socket} within {DAEMON_START_TIMEOUT:.0f} s; see {log_path}")


class Api:
    """Calls to the daemon: starts it when needed, turns its errors into ApiFailure."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = Client(settings.socket)
        self.started = False  # whether this command started the daemon (with its own environment, then)

    @classmethod
    def from_env(cls) -> Api:
        return cls(load_settings())

    def _unavailable(self) -> None:
        if self.settings.no_autostart:
            raise CliError(
                f"no r1 daemon is listening on {self.settings.socket}; start one with `r1 serve` "
                "(or as a service), or unset R1_NO_AUTOSTART to let r1 start it"
            )
        start_daemon(self.settings)
        self.started = True

    def __call__(self, method: str, path: str, body: Json | None = None) -> Json:
        """The daemon's answer, as loose JSON: for a caller that reads little or nothing of it."""
        try:
            try:
                return _json_object(self.client.request(method, path, body))
            except DaemonUnavailable:
                self._unavailable()
                return _json_object(self.client.request(method, path, body))
        except ApiError as exc:
            raise ApiFailure(exc.status, str(exc)) from exc

    def read(self, method: str, path: str, body: Json | None = None) -> Any:
        """The answer of a route that cli/shapes.py gives a shape: the caller names it, as in
        `tags: Tags = api.read("GET", "/api/tags")` (the daemon's word, not checked here)."""
        return self(method, path, body)

    def stream(self, method: str, path: str, body: Json | None = None) -> Generator[Any, None, None]:
        """The events of an NDJSON answer, each of the route's shape in cli/shapes.py, as in
        `events: Stream[ProgressEvent] = api.stream(...)`; close() hangs up (the daemon cancels a generation)."""
        try:
            try:
                events = self.client.stream(method, path, body)
                first = next(events, None)
            except DaemonUnavailable:
                self._unavailable()
                events = self.client.stream(method, path, body)
                first = next(events, None)
            if first is not None:
                yield first
                yield from events
        except ApiError as exc:
            raise ApiFailure(exc.status, str(exc)) from exc
