"""Settings: the only place that reads r1's environment variables.

Every setting is declared once in `SETTINGS` with its variable, default and meaning;
`r1 serve --help` prints that table, and `Settings.from_env()` builds the immutable
object the rest of the daemon receives. The CLI imports this module too, so it stays
cheap to import: the standard library only, and named tuples rather than dataclasses
(which import `inspect`: 10 ms of a CLI start that must stay under 100 ms).
"""

from __future__ import annotations

import os
import sys
from collections import namedtuple
from collections.abc import Mapping
from pathlib import Path

# sockaddr_un.sun_path: 104 bytes on macOS and the BSDs, 108 on Linux, NUL included.
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """A setting has a value r1 cannot use; the message names the variable."""


def default_home(env: Mapping[str, str]) -> Path:
    """Where the store lives when R1_HOME is not set."""
    home = Path(env.get("HOME") or Path.home())
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "r1"
    xdg = env.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else home / ".local" / "share") / "r1"


def default_socket(env: Mapping[str, str], home: Path) -> Path:
    """The per-user runtime directory when there is one (short, private, cleaned at logout)."""
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "r1.sock"
    return home / "r1.sock"


class Setting(namedtuple("Setting", "env default help")):
    """One environment variable: its name, how to describe its default, and what it means."""


SETTINGS: dict[str, Setting] = {
    "home": Setting(
        "R1_HOME",
        "$XDG_DATA_HOME/r1 (~/.local/share/r1); macOS: ~/Library/Application Support/r1",
        "Store root: the model index (r1.db), blobs/, snapshots/ and partial downloads.",
    ),
    "socket": Setting(
        "R1_SOCKET",
        "$XDG_RUNTIME_DIR/r1.sock if that directory exists, else $R1_HOME/r1.sock",
        f"Unix socket the daemon listens on (at most {MAX_SOCKET_PATH} bytes; created mode 0600).",
    ),
    "log_level": Setting(
        "R1_LOG_LEVEL", "INFO", "Daemon log level: " + ", ".join(LOG_LEVELS) + "."
    ),
    "no_autostart": Setting(
        "R1_NO_AUTOSTART",
        "unset",
        "CLI: when set to 1, never start a daemon in the background; fail and say how instead.",
    ),
}


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


class Settings(namedtuple("Settings", "home socket log_level no_autostart", defaults=("INFO", False))):
    """home: Path, socket: Path, log_level: str, no_autostart: bool (the keys of SETTINGS)."""

    __slots__ = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read every setting from `env` (default: os.environ); keyword overrides (flags) win."""
        env = os.environ if env is None else env
        home = Path(str(overrides.get("home") or env.get("R1_HOME") or default_home(env)))
        home = home.expanduser().absolute()
        socket = overrides.get("socket") or env.get("R1_SOCKET") or default_socket(env, home)
        socket = Path(str(socket)).expanduser().absolute()
        log_level = str(overrides.get("log_level") or env.get("R1_LOG_LEVEL") or "INFO").upper()
        no_autostart = overrides.get("no_autostart")
        if no_autostart is None:
            no_autostart = _flag(env.get("R1_NO_AUTOSTART", ""))
        settings = cls(
            home=home, socket=socket, log_level=log_level, no_autostart=bool(no_autostart)
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"R1_LOG_LEVEL={self.log_level!r} is not a log level; use one of {', '.join(LOG_LEVELS)}"
            )
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"socket path {self.socket} is {len(os.fsencode(self.socket))} bytes, longer than "
                f"the {MAX_SOCKET_PATH} a Unix socket allows here; set R1_SOCKET to a shorter path"
            )

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, to hand to a daemon started in the background."""
        out: dict[str, str] = {}
        for name, value in self._asdict().items():
            out[SETTINGS[name].env] = ("1" if value else "") if isinstance(value, bool) else str(value)
        return out


def settings_help() -> str:
    """The environment table for `r1 serve --help`: variable, default, meaning."""
    width = max(len(s.env) for s in SETTINGS.values())
    lines = []
    for setting in SETTINGS.values():
        lines.append(f"{setting.env:<{width}}  {setting.help}")
        lines.append(f"{'':<{width}}  default: {setting.default}")
    return "\n".join(lines)
