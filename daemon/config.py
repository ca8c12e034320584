"""Settings: the only place that reads r1's environment variables.

Every setting is declared once in `SETTINGS`: its variable, its default, the parser that turns
its text into a value, and what it means. `Settings.from_env()` builds the immutable object the
rest of the daemon receives from them; `r1 serve --help` prints them (`settings_help()`), and
docs/configuration.md is generated from them (`python -m r1.daemon.config`). The CLI imports
this module too, so it stays cheap to import: the standard library only, and no typing or dataclasses
(dataclasses imports `inspect`: 10 ms of a CLI start that must stay under 150 ms).
"""

from __future__ import annotations

import os
import re
import sys
from collections import namedtuple
from collections.abc import Callable, Mapping
from pathlib import Path

# sockaddr_un.sun_path: 104 bytes on macOS and the BSDs, 108 on Linux, NUL included.
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EXTRA_BUFFER_MODES = ("auto", "on", "off")
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")  # llama.cpp's K and V cache types r1 offers (GGML_TYPE_*)
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_OLLAMA_REGISTRY = "https://registry.ollama.ai"


class ConfigError(ValueError):
    """A setting has a value r1 cannot use; the message names the variable."""


# --- parsers: (text, variable) -> value; a ConfigError that names the variable otherwise ------------

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_size(text: str, variable: str) -> int:
    """Bytes from '12GiB', '8000 MB', '123456'; a ConfigError that names the variable otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ConfigError(f"{variable}={text!r} is not a size; write bytes or a number with a unit, e.g. 12GiB or 8000MB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, variable: str) -> float:
    """Seconds from '300', '5m', '1h30m', '2.5s', '30d' or '-1' (Ollama's keep_alive); negative means forever."""
    text = text.strip()
    number = r"[0-9]+(?:\.[0-9]+)?"
    if re.fullmatch(rf"-?{number}", text):
        return float(text)
    match = re.fullmatch(rf"(-?)((?:{number}(?:ms|s|m|h|d))+)", text)
    if not match:
        raise ConfigError(f"{variable}={text!r} is not a duration; write seconds or e.g. 30s, 5m, 1h30m, 30d (negative: forever)")
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(rf"({number})(ms|s|m|h|d)", match.group(2)))
    return -seconds if match.group(1) else seconds


def _budget(text: str, variable: str) -> int:
    size = parse_size(text, variable)
    if size <= 0:
        raise ConfigError(f"{variable} must be more than 0 bytes (it is {size})")
    return size


def _text(text: str, variable: str) -> str:
    return text


def _path(text: str, variable: str) -> Path:
    return Path(text).expanduser().absolute()


def _optional_path(text: str, variable: str) -> Path | None:
    return _path(text, variable) if text else None


def _positive_duration(text: str, variable: str) -> float:
    seconds = parse_duration(text, variable)
    if seconds <= 0:
        raise ConfigError(f"{variable}={text!r} must be a duration of more than 0 seconds, such as 2s or 500ms")
    return seconds


def _list(text: str, variable: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _flag(text: str, variable: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _endpoint(text: str, variable: str) -> str:
    return text.rstrip("/")


def _url(text: str, variable: str) -> str:
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", text.strip()):
        raise ConfigError(f"{variable}={text!r} must be an http:// or https:// URL, such as {DEFAULT_OLLAMA_REGISTRY}")
    return text.strip().rstrip("/")


def _socket_mode(text: str, variable: str) -> int:
    if not re.fullmatch(r"0?[0-7]{3}", text) or int(text, 8) & 0o177 & ~0o070:
        raise ConfigError(f"{variable}={text!r} must be an octal mode for the owner and group only, such as 0600 or 0660")
    return int(text, 8)


def _choice(choices: tuple[str, ...], normal: Callable[[str], str]) -> Callable[[str, str], str]:
    def parse(text: str, variable: str) -> str:
        value = normal(text.strip())
        if value not in choices:
            raise ConfigError(f"{variable}={value!r} must be one of {', '.join(choices)}")
        return value

    return parse


def whole_number(text: str, low: int, high: int) -> int | None:
    """`text` as a whole number from `low` to `high` (`low` >= 0) written in ASCII digits, else None; for
    settings, ports and query parameters (str.isdigit() takes '²', which int() then refuses)."""
    digits = text.lstrip("0") or text[-1:]  # leading zeros say nothing, and may be thousands long
    if not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(high)):
        return None
    value = int(digits)
    return value if low <= value <= high else None


def _count(low: int, high: int) -> Callable[[str, str], int]:
    def parse(text: str, variable: str) -> int:
        value = whole_number(text, low, high)
        if value is None:
            raise ConfigError(f"{variable}={text!r} must be a whole number from {low} to {high}")
        return value

    return parse


# --- defaults that depend on the machine ----------------------------------------------------------


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


IMPORT_TOOLS = ("ollama", "hf", "lmstudio")  # `r1 import --from`: the tools whose models r1 finds (daemon/intake/tools)
OLLAMA_SERVICE_STORE = Path("/usr/share/ollama/.ollama/models")  # Linux's install script runs a system user


def tool_roots(env: Mapping[str, str] | None = None, home: Path | None = None,
               platform: str = sys.platform) -> dict[str, list[Path]]:
    """Where Ollama, the Hugging Face cache and LM Studio keep a user's models, each tool's candidates
    most likely first (first_existing picks). The CLI computes them: the daemon may run as another user."""
    env = os.environ if env is None else env
    home = Path(home or env.get("HOME") or Path.home())
    ollama = [Path(env["OLLAMA_MODELS"])] if env.get("OLLAMA_MODELS") else [home / ".ollama" / "models"]
    if not env.get("OLLAMA_MODELS") and platform.startswith("linux"):
        ollama.append(OLLAMA_SERVICE_STORE)
    return {"ollama": ollama, "hf": [_hf_hub_cache(env, home)],
            "lmstudio": [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]}


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 in brackets or not) is this machine's loopback: R1_HOST
    there needs no key."""
    import ipaddress  # only where an address is checked: the CLI's start does without it

    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def first_existing(roots: list[Path]) -> Path:
    """The first of `roots` that is a folder, else the first (so an error names where r1 looked first)."""
    return next((root for root in roots if root.is_dir()), roots[0])


def _hf_hub_cache(env: Mapping[str, str], home: Path) -> Path:
    """As huggingface_hub computes it: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):  # the second: the older name, still honoured
        if env.get(variable):
            return Path(env[variable])
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]) / "hub"
    cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else home / ".cache"
    return cache / "huggingface" / "hub"


def total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_memory_budget(total: int) -> int:
    return total - max(2 * 1024**3, total // 4)


# --- the declarations ------------------------------------------------------------------------------


class Setting(namedtuple("Setting", "env default help parse derive", defaults=(None,))):
    """One environment variable, declared once.

    env      its name
    default  its value when unset, as the variable would hold it ("5m"; "" for unset); where `derive`
             computes the default, a description of how, for the help and the README
    help     what it means
    parse    (text, variable) -> the value; raises ConfigError naming the variable
    derive   (environment, values read so far) -> the default's text, for defaults that depend on the machine
    """

    __slots__ = ()

    @property
    def shown_default(self) -> str:
        return self.default or "unset"


SETTINGS: dict[str, Setting] = {
    "home": Setting(
        "R1_HOME",
        "$XDG_DATA_HOME/r1 (~/.local/share/r1); macOS: ~/Library/Application Support/r1",
        "Store root: the model index (r1.db), blobs/, snapshots/ and partial downloads.",
        _path,
        lambda env, values: str(default_home(env)),
    ),
    "socket": Setting(
        "R1_SOCKET",
        "$XDG_RUNTIME_DIR/r1.sock if that directory exists, else $R1_HOME/r1.sock",
        "Unix socket the daemon listens on (at most 103 bytes on macOS, 107 on Linux).",
        _path,
        lambda env, values: str(default_socket(env, values["home"])),
    ),
    "socket_mode": Setting(
        "R1_SOCKET_MODE", "0600", "Permissions of the socket: 0600 for one user; 0660 lets the socket's group in (the "
        "system service).", _socket_mode
    ),
    "host": Setting(
        "R1_HOST", "", "Also listen on TCP at HOST:PORT (127.0.0.1:11434 is Ollama's). A non-loopback address needs "
        "R1_API_KEY.", _text
    ),
    "api_key": Setting(
        "R1_API_KEY", "", "Bearer token every TCP request must carry (Authorization: Bearer ...). The Unix socket "
        "needs none.", _text
    ),
    "origins": Setting(
        "R1_ORIGINS", "", "Browser origins allowed on TCP besides localhost, 127.0.0.1 and [::1] on any port, "
        "comma-separated; * matches any run of characters, every other character only itself (e.g. "
        "https://*.example.com, app://*).", _list
    ),
    "allowed_hosts": Setting(
        "R1_ALLOWED_HOSTS", "", "Host header names allowed on TCP besides loopback names and IP addresses, "
        "comma-separated (guards against DNS rebinding).", _list
    ),
    "log_level": Setting(
        "R1_LOG_LEVEL",
        "INFO",
        "Log level of the daemon and its runners: " + ", ".join(LOG_LEVELS) + ".",
        _choice(LOG_LEVELS, str.upper),
    ),
    "log_file": Setting(
        "R1_LOG_FILE", "", "Log to this file instead of stderr; SIGHUP reopens it (for logrotate).", _optional_path
    ),
    "log_requests": Setting(
        "R1_LOG_REQUESTS", "1", "When 1, record every API request in the request log (r1 usage, r1 log); 0 turns "
        "the log off.", _flag
    ),
    "log_prompts": Setting(
        "R1_LOG_PROMPTS", "", "When 1, the request log keeps each generation's prompt and answer, and each failed "
        "request's error message (off by default: counts, timings and statuses only, since messages may quote "
        "what a client sent).", _flag
    ),
    "log_retention": Setting(
        "R1_LOG_RETENTION", "30d", "How long the request log keeps a request (1h, 7d, 30d; negative: forever); "
        "older ones are pruned hourly.", parse_duration
    ),
    "shutdown_grace": Setting(
        "R1_SHUTDOWN_GRACE", "10s", "On SIGTERM, how long requests in flight may take to finish before they are "
        "cancelled.", parse_duration
    ),
    "no_autostart": Setting(
        "R1_NO_AUTOSTART", "", "CLI: when set to 1, never start a daemon in the background; fail and say how "
        "instead.", _flag
    ),
    "keep_alive": Setting(
        "R1_KEEP_ALIVE", "5m", "How long a model stays loaded after its last request (30s, 5m, 1h; 0 unloads at once; "
        "negative keeps it loaded). A request's keep_alive overrides it (one over 100 years, like a negative one, "
        "keeps the model loaded).", parse_duration
    ),
    "memory_budget": Setting(
        "R1_MEMORY_BUDGET",
        "total RAM less a quarter of it (at least 2 GiB) for the OS and other programs",
        "Memory r1 may use for models, in bytes or with a unit (12GiB, 8000MB). "
        "r1 pull without a tag picks the best quantization that fits it.",
        _budget,
        lambda env, values: str(default_memory_budget(total_memory())),
    ),
    "max_loaded": Setting(
        "R1_MAX_LOADED", "0", "Most models loaded at once (0: no limit but the memory budget).", _count(0, 1024)
    ),
    "llama_extra_buffers": Setting(
        "R1_LLAMA_EXTRA_BUFFERS", "auto", "llama.cpp's extra buffer types (AMX and repacked weights, faster on the "
        "CPU): auto uses them until they crash on this CPU, then loads without them and remembers that; on always uses "
        "them; off never does (see docs/troubleshooting.md).", _choice(EXTRA_BUFFER_MODES, str.lower)
    ),
    "num_parallel": Setting(
        "R1_NUM_PARALLEL", "4", "Sequence slots per loaded model: requests it serves at once, decoded together in "
        "batches; more wait their turn in arrival order. Each slot holds num_ctx tokens of KV cache: a model whose "
        "slots do not all fit the memory budget gets fewer, down to 1.", _count(1, 64)
    ),
    "num_thread": Setting(
        "R1_NUM_THREAD", "0", "CPU threads a llama.cpp runner computes with, for prompts and tokens alike, where the "
        "model or request sets no num_thread option (0: half the cores for tokens, all of them for prompts). Lower it "
        "to leave cores to other programs, or when several models run at once.", _count(0, 1024)
    ),
    "kv_cache_ram": Setting(
        "R1_KV_CACHE_RAM", "512MiB", "Host RAM per GGUF runner for KV cache cells that a slot gives up to another "
        "conversation; a prompt that shares more with them than with any slot gets them back. Least recently used out "
        "first; reserved in the memory budget from the load on, at most an eighth of the budget and what it holds "
        "beside the model. 0 turns it off.", parse_size
    ),
    "kv_cache_disk": Setting(
        "R1_KV_CACHE_DISK", "4GiB", "Disk space per model for the prompt cache under $R1_HOME/kv: a prompt's KV cells, "
        "saved once evaluated, serve the same prefix again after an unload or a restart. Least recently used out "
        "first. 0 turns it off.", parse_size
    ),
    "kv_cache_min_tokens": Setting(
        "R1_KV_CACHE_MIN_TOKENS", "1024", "Fewest tokens a prompt (disk) or a slot's cells (RAM) must hold to be "
        "cached: shorter ones cost little to evaluate again.", _count(1, 10**7)
    ),
    "kv_cache_type": Setting(
        "R1_KV_CACHE_TYPE", "f16", "Type of a GGUF runner's KV cache where the model or request sets no kv_cache_type "
        "option: f16, q8_0 (about half the memory) or q4_0 (about a quarter), for K and V alike, with flash attention. "
        "A quantized cache holds a longer context in the same memory, at some cost in accuracy. MLX models keep theirs "
        "in f16.", _choice(KV_CACHE_TYPES, str.lower)
    ),
    "lookup_drafts": Setting(
        "R1_LOOKUP_DRAFTS", "6", "Tokens a GGUF runner guesses ahead at most per step by prompt lookup (speculative "
        "decoding with no second model: the tokens that followed the sequence's last few tokens earlier in its text), "
        "kept while the model samples the same ones. Answers are the same either way; 0 turns it off.", _count(0, 64)
    ),
    "max_queue": Setting(
        "R1_MAX_QUEUE", "512", "Requests that may wait for a model or a turn; beyond that the answer is 503.",
        _count(1, 100_000)
    ),
    "template_timeout": Setting(
        "R1_TEMPLATE_TIMEOUT", "2s", "Longest a chat template may take to render one prompt (500ms, 2s); a template "
        "that runs longer is stopped and its request answered 400. Real templates take milliseconds.",
        _positive_duration
    ),
    "template_max_loops": Setting(
        "R1_TEMPLATE_MAX_LOOPS", "1000000", "Most loop iterations and calls a chat template may run for one prompt; "
        "beyond that the request is answered 400.", _count(1, 10**9)
    ),
    "template_max_output": Setting(
        "R1_TEMPLATE_MAX_OUTPUT", "8MiB", "Most characters a chat template may write for one prompt, or build into "
        "any one value; beyond that the request is answered 400. The template renderer may use 512 MiB plus 16 "
        "times this much memory.", _budget
    ),
    "template_max_bytes": Setting(
        "R1_TEMPLATE_MAX_BYTES", "128KiB", "Largest chat template r1 renders, in bytes (Go templates: also once "
        "converted to Jinja, about twice as long). A larger one in a request or `r1 create` is a 400, a pull keeps "
        "the GGUF's own, and chats with a model whose own is larger are refused. Real templates are a few KiB, "
        "the largest about 40.", _budget
    ),
    "pull_connections": Setting(
        "R1_PULL_CONNECTIONS", "4", "Byte ranges of one file downloaded in parallel by a pull.", _count(1, 64)
    ),
    "hf_endpoint": Setting(
        "HF_ENDPOINT", DEFAULT_HF_ENDPOINT, "The Hugging Face Hub (or a mirror) that pulls come from.", _endpoint
    ),
    "hf_offline": Setting(
        "HF_HUB_OFFLINE", "", "When 1, never contact the Hub or Ollama's registry: pulls of models the store lacks "
        "fail, pulls of stored ones keep them unchecked, the store still serves.", _flag
    ),
    "ollama_registry": Setting(
        "R1_OLLAMA_REGISTRY", DEFAULT_OLLAMA_REGISTRY, "Ollama's registry (or a mirror): names that are neither "
        "stored, in r1's catalog nor on the Hub (llama3.1, qwen3:8b, namespace/model:tag) are pulled from it.", _url
    ),
    "no_ollama_registry": Setting(
        "R1_NO_OLLAMA_REGISTRY", "", "When 1, never look names up in Ollama's registry.", _flag
    ),
    "remote_parallel": Setting(
        "R1_REMOTE_PARALLEL", "8", "Requests in flight to one remote engine (r1 remote add); more wait their turn "
        "in arrival order.", _count(1, 1024)
    ),
    "remote_connect_timeout": Setting(
        "R1_REMOTE_CONNECT_TIMEOUT", "10s", "How long r1 waits to connect to a remote engine's URL before it tries "
        "the next one or answers 502.", parse_duration
    ),
    "remote_first_byte_timeout": Setting(
        "R1_REMOTE_FIRST_BYTE_TIMEOUT", "2m", "How long r1 waits for a remote engine to start answering, and at most "
        "between two parts of its answer, before it answers 504.", parse_duration
    ),
    "responses_ttl": Setting(
        "R1_RESPONSES_TTL", "1h", "How long /v1/responses keeps a response (unless the request says store: false), "
        "for previous_response_id and GET /v1/responses/{id}.", parse_duration
    ),
    "offline": Setting(
        "R1_OFFLINE", "", "When 1, r1 calls no remote engine: requests for remote models are refused.", _flag
    ),
}


def secret_from_env(variable: str) -> str | None:
    """A remote engine's key, read from the daemon's environment when a request needs it (not a setting:
    the variable is the one `r1 remote add --api-key-env` names)."""
    return os.environ.get(variable) or None
# Read by huggingface_hub itself, listed for completeness: HF_TOKEN (or `hf auth login`)
# authenticates pulls of private and gated repos.
EXTERNAL_SETTINGS = {"HF_TOKEN": "Hugging Face token for private and gated repos (or the token file of `hf auth login`)."}


SECRET_SETTINGS = ("R1_API_KEY",)  # the daemon says whether these are set (GET /api/daemon), never their value


def external_set(env: Mapping[str, str] | None = None) -> dict[str, bool]:
    """Which EXTERNAL_SETTINGS the environment sets (never their values: they are secrets)."""
    env = os.environ if env is None else env
    return {variable: bool(env.get(variable)) for variable in EXTERNAL_SETTINGS}


SERVICE_UNIT, SERVICE_LABEL = "r1.service", "com.r1.daemon"  # as `r1 service install` names them


def service_manager(env: Mapping[str, str] | None = None, cgroup: Path = Path("/proc/self/cgroup")) -> str | None:
    """"systemd" or "launchd" when this process runs as r1's service, else None (started by the CLI or a
    shell). systemd puts a service in a cgroup named after its unit; launchd names its job in
    XPC_SERVICE_NAME. (INVOCATION_ID is no proof: shells in some terminals inherit it.)"""
    env = os.environ if env is None else env
    if env.get("XPC_SERVICE_NAME", "").startswith(SERVICE_LABEL):
        return "launchd"
    try:
        groups = cgroup.read_text().splitlines()
    except OSError:
        return None
    return "systemd" if any(line.rsplit("/", 1)[-1] == SERVICE_UNIT for line in groups) else None


class Settings:
    """The value of every setting: one field per key of SETTINGS, in its order, typed as its parser returns
    (tests/test_config.py holds the two together). Immutable: read once, then passed down. A plain class
    with slots: a NamedTuple or dataclass would import typing or dataclasses at the CLI's start."""

    home: Path
    socket: Path
    socket_mode: int
    host: str
    api_key: str
    origins: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    log_level: str
    log_file: Path | None
    log_requests: bool
    log_prompts: bool
    log_retention: float
    shutdown_grace: float
    no_autostart: bool
    keep_alive: float
    memory_budget: int
    max_loaded: int
    llama_extra_buffers: str
    num_parallel: int
    num_thread: int
    kv_cache_ram: int
    kv_cache_disk: int
    kv_cache_min_tokens: int
    kv_cache_type: str
    lookup_drafts: int
    max_queue: int
    template_timeout: float
    template_max_loops: int
    template_max_output: int
    template_max_bytes: int
    pull_connections: int
    hf_endpoint: str
    hf_offline: bool
    ollama_registry: str
    no_ollama_registry: bool
    remote_parallel: int
    remote_connect_timeout: float
    remote_first_byte_timeout: float
    responses_ttl: float
    offline: bool

    __slots__ = tuple(SETTINGS)

    def __init__(self, **values: object) -> None:
        if values.keys() != set(self.__slots__):
            wrong = sorted(values.keys() ^ set(self.__slots__))
            raise TypeError(f"settings need exactly the fields of SETTINGS, not {wrong}")
        for name in self.__slots__:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"settings are read once; {name} cannot change")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{name}={value!r}" for name, value in self.as_dict().items()) + ")"

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read every setting from `env` (default: os.environ); keyword overrides (flags) win."""
        env = os.environ if env is None else env
        unknown = overrides.keys() - SETTINGS.keys()
        if unknown:
            raise TypeError(f"no such setting: {', '.join(sorted(unknown))}")
        values: dict[str, object] = {}
        for key, setting in SETTINGS.items():
            override = overrides.get(key)
            text = str(override) if override is not None else env.get(setting.env)
            if not text:  # unset or empty: the default
                text = setting.derive(env, values) if setting.derive else setting.default
            values[key] = setting.parse(text, setting.env)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"socket path {self.socket} is {len(os.fsencode(self.socket))} bytes, longer than "
                f"the {MAX_SOCKET_PATH} a Unix socket allows here; set R1_SOCKET to a shorter path"
            )

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, to hand to a daemon started in the background."""
        out: dict[str, str] = {}
        for name, value in self.as_dict().items():
            if isinstance(value, bool):
                text = "1" if value else "0"  # "0", not "": an unset flag takes its default (R1_LOG_REQUESTS: on)
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
        lines.append(f"{'':<{width}}  default: {setting.shown_default}")
    for env, meaning in EXTERNAL_SETTINGS.items():
        lines.append(f"{env:<{width}}  {meaning}")
    return "\n".join(lines)


def _default_cell(setting: Setting) -> str:
    if setting.derive:
        return str(setting.default)  # a description of how it is computed, not a value
    return f"`{setting.default}`" if setting.default else "unset"


def configuration_page() -> str:
    """docs/configuration.md, written from the declarations: `python -m r1.daemon.config > docs/configuration.md`
    (tests/test_readme.py checks the page is this text)."""
    rows = [f"| `{s.env}` | {_default_cell(s)} | {s.help} |" for s in SETTINGS.values()]
    rows += [f"| `{env}` | unset | {meaning} |" for env, meaning in EXTERNAL_SETTINGS.items()]
    intro = ("Read from the environment (and `r1 serve` flags); `r1 serve --help` prints this table. Generated "
             "from daemon/config.py's declarations by `python -m r1.daemon.config`: edit them, not this page.")
    return "\n".join(["# Configuration", "", intro, "", "| variable | default | meaning |", "|---|---|---|", *rows, ""])


if __name__ == "__main__":
    sys.stdout.write(configuration_page())
