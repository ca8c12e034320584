"""Settings: the only place that reads r1's environment variables.

Every setting is declared once in `SETTINGS` with its variable, default and meaning;
`r1 serve --help` prints that table, and `Settings.from_env()` builds the immutable
object the rest of the daemon receives. The CLI imports this module too, so it stays
cheap to import: the standard library only, and named tuples rather than dataclasses
(which import `inspect`: 10 ms of a CLI start that must stay under 100 ms).
"""

from __future__ import annotations

import os
import re
import sys
from collections import namedtuple
from collections.abc import Mapping
from pathlib import Path

# sockaddr_un.sun_path: 104 bytes on macOS and the BSDs, 108 on Linux, NUL included.
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EXTRA_BUFFER_MODES = ("auto", "on", "off")
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


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
    "socket_mode": Setting(
        "R1_SOCKET_MODE",
        "0600",
        "Permissions of the socket: 0600 for one user; 0660 lets the socket's group in (the system service).",
    ),
    "host": Setting(
        "R1_HOST",
        "unset (no TCP)",
        "Also listen on TCP at HOST:PORT (127.0.0.1:11434 is Ollama's). A non-loopback address needs R1_API_KEY.",
    ),
    "api_key": Setting(
        "R1_API_KEY",
        "unset",
        "Bearer token every TCP request must carry (Authorization: Bearer ...). The Unix socket needs none.",
    ),
    "origins": Setting(
        "R1_ORIGINS",
        "localhost and 127.0.0.1 on any port",
        "More browser origins allowed on TCP, comma-separated; * matches any run of characters "
        "(e.g. https://*.example.com, app://*).",
    ),
    "allowed_hosts": Setting(
        "R1_ALLOWED_HOSTS",
        "loopback names and IP addresses",
        "More Host header names allowed on TCP, comma-separated (guards against DNS rebinding).",
    ),
    "log_level": Setting(
        "R1_LOG_LEVEL", "INFO", "Daemon log level: " + ", ".join(LOG_LEVELS) + "."
    ),
    "no_autostart": Setting(
        "R1_NO_AUTOSTART",
        "unset",
        "CLI: when set to 1, never start a daemon in the background; fail and say how instead.",
    ),
    "memory_budget": Setting(
        "R1_MEMORY_BUDGET",
        "total RAM less a quarter of it (at least 2 GiB) for the OS and other programs",
        "Memory r1 may use for models, in bytes or with a unit (12GiB, 8000MB). "
        "`r1 pull` without a tag picks the best quantization that fits it.",
    ),
    "keep_alive": Setting(
        "R1_KEEP_ALIVE",
        "5m",
        "How long a model stays loaded after its last request (30s, 5m, 1h; 0 unloads at once; "
        "negative keeps it loaded). A request's keep_alive overrides it.",
    ),
    "log_file": Setting(
        "R1_LOG_FILE", "unset (stderr)", "Log to this file instead of stderr; SIGHUP reopens it (for logrotate)."
    ),
    "shutdown_grace": Setting(
        "R1_SHUTDOWN_GRACE", "10s", "On SIGTERM, how long requests in flight may take to finish before they are cancelled."
    ),
    "max_loaded": Setting(
        "R1_MAX_LOADED", "0", "Most models loaded at once (0: no limit but the memory budget)."
    ),
    "num_parallel": Setting(
        "R1_NUM_PARALLEL",
        "1",
        "Requests one loaded model serves at once; more wait their turn in arrival order. "
        "The llama.cpp and MLX runners compute one sequence at a time.",
    ),
    "llama_extra_buffers": Setting(
        "R1_LLAMA_EXTRA_BUFFERS",
        "auto",
        "llama.cpp's extra buffer types (AMX and repacked weights, faster on the CPU): auto uses them until they "
        "crash on this CPU, then loads without them and remembers that; on always uses them; off never does.",
    ),
    "max_queue": Setting(
        "R1_MAX_QUEUE", "512", "Requests that may wait for a model or a turn; beyond that the answer is 503."
    ),
    "pull_connections": Setting(
        "R1_PULL_CONNECTIONS", "4", "Byte ranges of one file downloaded in parallel by a pull."
    ),
    "hf_endpoint": Setting(
        "HF_ENDPOINT", DEFAULT_HF_ENDPOINT, "The Hugging Face Hub (or a mirror) that pulls come from."
    ),
    "hf_offline": Setting(
        "HF_HUB_OFFLINE", "unset", "When 1, never contact the Hub: pulls fail, the store still serves."
    ),
}
# Read by huggingface_hub itself, listed for completeness: HF_TOKEN (or `hf auth login`)
# authenticates pulls of private and gated repos.
EXTERNAL_SETTINGS = {"HF_TOKEN": "Hugging Face token for private and gated repos (or the token file of `hf auth login`)."}

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_size(text: str, variable: str) -> int:
    """Bytes from '12GiB', '8000 MB', '123456'; a ConfigError that names the variable otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ConfigError(f"{variable}={text!r} is not a size; write bytes or a number with a unit, e.g. 12GiB or 8000MB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str, variable: str) -> float:
    """Seconds from '300', '5m', '1h30m', '2.5s' or '-1' (Ollama's keep_alive); negative means forever."""
    text = text.strip()
    number = r"[0-9]+(?:\.[0-9]+)?"
    if re.fullmatch(rf"-?{number}", text):
        return float(text)
    match = re.fullmatch(rf"(-?)((?:{number}(?:ms|s|m|h))+)", text)
    if not match:
        raise ConfigError(f"{variable}={text!r} is not a duration; write seconds or e.g. 30s, 5m, 1h30m (negative: forever)")
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(rf"({number})(ms|s|m|h)", match.group(2)))
    return -seconds if match.group(1) else seconds


def total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_memory_budget(total: int) -> int:
    return total - max(2 * 1024**3, total // 4)


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


class Settings(
    namedtuple(
        "Settings",
        "home socket socket_mode host api_key origins allowed_hosts log_level log_file shutdown_grace no_autostart "
        "memory_budget keep_alive max_loaded num_parallel llama_extra_buffers max_queue pull_connections hf_endpoint hf_offline",
    )
):
    """home: Path, socket: Path, socket_mode: int, host: str ("" for none), api_key: str, origins: tuple[str, ...],
    allowed_hosts: tuple[str, ...], log_level: str, log_file: Path | None, shutdown_grace: float (seconds), no_autostart: bool, memory_budget: int (bytes),
    keep_alive: float (seconds; negative: forever), max_loaded: int, num_parallel: int,
    llama_extra_buffers: str ("auto", "on" or "off"), max_queue: int,
    pull_connections: int, hf_endpoint: str, hf_offline: bool (the keys of SETTINGS)."""

    __slots__ = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read every setting from `env` (default: os.environ); keyword overrides (flags) win."""
        env = os.environ if env is None else env

        def raw(key: str) -> str | None:
            value = overrides.get(key)
            return str(value) if value is not None else env.get(SETTINGS[key].env) or None

        home = Path(raw("home") or default_home(env)).expanduser().absolute()
        socket = Path(raw("socket") or default_socket(env, home)).expanduser().absolute()
        budget = raw("memory_budget")
        def count(key: str, default: int, low: int, high: int) -> int:
            text = raw(key) or str(default)
            if not text.isdigit() or not low <= int(text) <= high:
                raise ConfigError(f"{SETTINGS[key].env}={text!r} must be a whole number from {low} to {high}")
            return int(text)

        mode_text = raw("socket_mode") or "0600"
        if not re.fullmatch(r"0?[0-7]{3}", mode_text) or int(mode_text, 8) & 0o177 & ~0o070:
            raise ConfigError(f"R1_SOCKET_MODE={mode_text!r} must be an octal mode for the owner and group only, "
                              "such as 0600 or 0660")
        log_file = raw("log_file")
        settings = cls(
            home=home,
            socket=socket,
            socket_mode=int(mode_text, 8),
            host=raw("host") or "",
            api_key=raw("api_key") or "",
            origins=_list(raw("origins")),
            allowed_hosts=_list(raw("allowed_hosts")),
            log_file=Path(log_file).expanduser().absolute() if log_file else None,
            shutdown_grace=parse_duration(raw("shutdown_grace") or "10s", "R1_SHUTDOWN_GRACE"),
            log_level=(raw("log_level") or "INFO").upper(),
            no_autostart=_flag(raw("no_autostart") or ""),
            memory_budget=parse_size(budget, "R1_MEMORY_BUDGET") if budget else default_memory_budget(total_memory()),
            keep_alive=parse_duration(raw("keep_alive") or "5m", "R1_KEEP_ALIVE"),
            max_loaded=count("max_loaded", 0, 0, 1024),
            num_parallel=count("num_parallel", 1, 1, 64),
            llama_extra_buffers=(raw("llama_extra_buffers") or "auto").strip().lower(),
            max_queue=count("max_queue", 512, 1, 100_000),
            pull_connections=count("pull_connections", 4, 1, 64),
            hf_endpoint=(raw("hf_endpoint") or DEFAULT_HF_ENDPOINT).rstrip("/"),
            hf_offline=_flag(raw("hf_offline") or ""),
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
        if self.llama_extra_buffers not in EXTRA_BUFFER_MODES:
            raise ConfigError(f"R1_LLAMA_EXTRA_BUFFERS={self.llama_extra_buffers!r} must be one of "
                              f"{', '.join(EXTRA_BUFFER_MODES)}")
        if self.memory_budget <= 0:
            raise ConfigError(f"R1_MEMORY_BUDGET must be more than 0 bytes (it is {self.memory_budget})")

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, to hand to a daemon started in the background."""
        out: dict[str, str] = {}
        for name, value in self._asdict().items():
            if isinstance(value, bool):
                text = "1" if value else ""
            elif isinstance(value, tuple):
                text = ",".join(value)
            elif name == "socket_mode":
                text = f"{value:04o}"
            else:
                text = "" if value is None else str(value)
            out[SETTINGS[name].env] = text
        return out


def settings_help() -> str:
    """The environment table for `r1 serve --help`: variable, default, meaning."""
    width = max(len(s.env) for s in SETTINGS.values())
    lines = []
    for setting in SETTINGS.values():
        lines.append(f"{setting.env:<{width}}  {setting.help}")
        lines.append(f"{'':<{width}}  default: {setting.default}")
    for env, meaning in EXTERNAL_SETTINGS.items():
        lines.append(f"{env:<{width}}  {meaning}")
    return "\n".join(lines)
