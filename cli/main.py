"""The `r1` command: a thin client of the daemon. Each command makes an API call or two and renders the answer.

This module only declares the commands. Each imports what it needs when it runs (the API
client, the renderer, the daemon for `serve`, the chat for `run`), so `r1 list` loads little
besides click. Failures are CliError (a click.ClickException), shown by main() alone.
"""

from __future__ import annotations

import click

from ..daemon import __version__
from ..daemon.config import LOG_LEVELS, settings_help
from .commands import JSON_HELP, Commands, print_json
from .completion import (COMPLETE_VAR, SHELLS, catalog_models, chat_models, loaded_models, paths, script,
                         store_models)
from .remote import remote

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import Catalog, Loaded, ModelInfo, Running, Tags

READS_HELP = "count the requests that only read the daemon's state too (list, ps, show, the console's polling)"
SAFE_MARK = "*"  # r1 ps: a llama.cpp model running without its extra buffer types


def _exit(status: int) -> None:
    """End the command with `status` (main() returns it)."""
    click.get_current_context().exit(status)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", message="r1 version %(version)s")
def cli() -> None:
    """r1 runs language models on your own machine. A background daemon keeps the models; this
    command talks to it over a Unix socket.

    `r1 completion bash|zsh|fish` prints a script that completes commands and model names.
    """


# \b keeps click from re-wrapping the table.
@cli.command(epilog="\b\nenvironment:\n" + settings_help())
@click.option("--socket", help="Unix socket to listen on (R1_SOCKET)")
@click.option("--home", help="store root (R1_HOME)")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), metavar="[" + "|".join(LOG_LEVELS) + "]",
              help="R1_LOG_LEVEL")
def serve(socket: str | None, home: str | None, log_level: str | None) -> None:
    """Run the daemon in the foreground (Ctrl-C or SIGTERM stops it)."""
    from ..daemon.server import run  # the daemon's imports are for this command only
    from .api import load_settings
    from .daemon_control import refuse_second_daemon

    settings = load_settings(socket=socket, home=home, log_level=log_level)
    refuse_second_daemon(settings)
    _exit(run(settings))


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--available", is_flag=True, help="list the catalog `r1 pull` knows (as `r1 search`)")
def list_models(as_json: bool, available: bool) -> None:
    """List the models in the store (--available: the catalog of short names instead). Also `r1 ls`."""
    if available:
        _search((), as_json)
        return
    from . import render
    from .api import Api

    tags: Tags = Api.from_env().read("GET", "/api/tags")
    models = tags["models"]
    if as_json:
        print_json(models)
        return
    rows = [
        (m["name"], m["digest"][:12], "remote" if "remote" in m else render.human_size(m["size"]), m["details"]["format"],
         m["details"]["quantization_level"] or "-", render.human_age(m["modified_at"]))
        for m in models
    ]
    print(render.table(("NAME", "ID", "SIZE", "FORMAT", "QUANT", "MODIFIED"), rows))
    for m in models:
        for problem in m.get("broken", []):
            print(f"\n{m['name']} cannot be served: {problem}; import it again")


@cli.command()
@click.argument("name", shell_complete=catalog_models)
@click.option("--cancel", is_flag=True, help="cancel the pull of NAME under way, for every client that follows it")
def pull(name: str, cancel: bool) -> None:
    """Pull a model from the Hugging Face Hub (org/repo[:quant], hf.co/org/repo[:quant], or a short name)
    or Ollama's library (llama3.1, qwen3:8b, namespace/model:tag); a stored one is checked for a newer version.

    Ctrl-C cancels the pull, unless another client follows it too: then it goes on for them.
    """
    from . import fetch
    from .api import Api

    if cancel:
        fetch.cancel_pull(Api.from_env(), name)
        return
    fetch.pull(Api.from_env(), name)


def _search(query: tuple[str, ...], as_json: bool) -> None:
    from . import render
    from .api import Api

    catalog: Catalog = Api.from_env().read("GET", "/api/catalog")
    models = catalog["models"]
    if query:
        words = " ".join(query).lower().split()
        models = [m for m in models if all(w in f"{m['name']} {m['repo']} {m['description']}".lower() for w in words)]
    if as_json:
        print_json(models)
        return
    # A name that holds an imported model says so: that model is the file's, not the catalog's repo.
    rows = [(m["name"], m["repo"], m["tag"] or "auto", "imported" if m.get("imported") else "yes" if m["installed"]
             else "", m["description"]) for m in models]
    print(render.table(("NAME", "REPO", "QUANT", "PULLED", "DESCRIPTION"), rows))


@cli.command()
@click.argument("query", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def search(query: tuple[str, ...], as_json: bool) -> None:
    """List the short names r1 knows (deepseek-r1:7b, ...); any org/repo on the Hub works too.

    Words in QUERY must all appear in the name, repo or description.
    """
    _search(query, as_json)


@cli.command()
@click.argument("name", shell_complete=store_models)
@click.option("--modelfile", "fields", flag_value="modelfile", multiple=True, help="print the Modelfile alone")
@click.option("--parameters", "fields", flag_value="parameters", multiple=True, help="print the parameters alone")
@click.option("--template", "fields", flag_value="template", multiple=True, help="print the template alone")
@click.option("--system", "fields", flag_value="system", multiple=True, help="print the system prompt alone")
@click.option("--license", "fields", flag_value="license", multiple=True, help="print the license alone")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def show(name: str, fields: tuple[str, ...], as_json: bool) -> None:
    """Show what r1 knows about a model: its facts, capabilities, parameters, system prompt, license,
    memory and files."""
    from .api import Api
    from .errors import CliError
    from .show import print_field, print_model

    if len(set(fields)) + as_json > 1:
        raise CliError("only one of --modelfile, --parameters, --template, --system, --license or --json "
                       "can be given")
    info: ModelInfo = Api.from_env().read("POST", "/api/show", {"model": name})
    if as_json:
        print_json(info)
    elif fields:
        print_field(info, fields[0])
    else:
        print_model(info)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def ps(as_json: bool) -> None:
    """List the models loaded in memory, and what they use of the memory budget."""
    from . import render
    from .api import Api

    answer: Running = Api.from_env().read("GET", "/api/ps")
    if as_json:
        print_json(answer)
        return
    rows = []
    remote = [m for m in answer["models"] if "remote" in m]
    for m in answer["models"]:
        if "remote" in m:
            continue
        until = {"stopping": "Stopping...", "loading": "Loading..."}.get(m["state"]) or render.human_until(m["expires_at"] or "")
        context = f"{m['context_length']}" + (f" {m['kv_cache_type']}" if m.get("kv_cache_type", "f16") != "f16" else "")
        rows.append((m["name"], m["digest"][:12], render.human_size(m["size"]), processor(m), context,
                     f"{m['slots_busy']}/{m['slots']}", until))
    print(render.table(("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "SLOTS", "UNTIL"), rows))
    memory = answer["memory"]
    for note in render.twice_loaded(answer["models"]):
        print(f"\n{note}")
    for m in answer["models"]:
        if m.get("kv_cache"):
            kv = m["kv_cache"]
            print(f"\n{m['name']} KV cache: {render.human_size(kv['ram'])} of {render.human_size(kv['ram_cap'])} in RAM, "
                  f"{render.human_size(kv['disk'])} of {render.human_size(kv['disk_cap'])} on disk")
    if any(m.get("extra_buffers") is False for m in answer["models"]):
        print(f"\n{SAFE_MARK} without llama.cpp's extra buffer types (AMX, repacked weights): they crashed on this CPU, "
              "or R1_LLAMA_EXTRA_BUFFERS is off")
    if remote:
        print("\n" + render.table(("REMOTE MODEL", "REMOTE", "UPSTREAM MODEL", "REQUESTS"),
                                   [(m["name"], m["remote"]["name"], m["remote"]["model"], str(m["requests"]))
                                    for m in remote]))
    if answer["models"]:
        print(f"\n{render.human_size(memory['used'])} of the {render.human_size(memory['budget'])} memory budget in use"
              + (f", {render.human_size(memory['device_used'])} on the GPU" if memory.get("device_used") else "")
              + (f"; {answer['waiting']} requests waiting" if answer["waiting"] else ""))


def processor(model: Loaded) -> str:
    """Where a loaded model sits, as Ollama's ps says it: 100% CPU, 100% GPU, or 48%/52% CPU/GPU."""
    share = round(100 * model["size_vram"] / model["size"]) if model["size"] else 0
    where = "100% GPU" if share == 100 else "100% CPU" if share == 0 else f"{100 - share}%/{share}% CPU/GPU"
    return where + SAFE_MARK if model.get("extra_buffers") is False else where


@cli.command()
@click.option("--by", type=click.Choice(["model", "day", "client"]), default="model", show_default=True,
              help="what each row totals")
@click.option("--since", default="7d", show_default=True, metavar="DURATION", help="how far back (24h, 7d, 30d)")
@click.option("--all", "everything", is_flag=True, help=READS_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def usage(by: str, since: str, everything: bool, as_json: bool) -> None:
    """Totals from the request log: requests, tokens, speed and cost by model, day or client."""
    from .usage import usage as show

    show(by, since, as_json, everything)


@cli.command()
@click.option("-n", "limit", type=click.IntRange(0, 10_000), default=20, show_default=True,
              help="how many of the last requests")
@click.option("--follow", "-f", is_flag=True, help="keep printing requests as they finish (Ctrl-C stops)")
@click.option("--all", "everything", is_flag=True, help=READS_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP + " (with --follow: one object a line)")
def log(limit: int, follow: bool, everything: bool, as_json: bool) -> None:
    """The last requests the daemon served, in the order they came: who asked, which route and model,
    tokens and timings."""
    from .usage import log as show

    show(limit, follow, as_json, everything)


@cli.command()
@click.argument("name", shell_complete=loaded_models)
def stop(name: str) -> None:
    """Unload a model now (once the requests it is serving end)."""
    from .api import Api

    for _ in Api.from_env().stream("POST", "/api/generate", {"model": name, "keep_alive": 0}):
        pass


@cli.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...", shell_complete=store_models)
def rm(names: tuple[str, ...]) -> None:
    """Remove models; files no other model uses are deleted."""
    from .api import Api, ApiFailure

    api = Api.from_env()
    failed = 0
    for name in names:
        try:
            api("DELETE", "/api/delete", {"model": name})
            print(f"deleted '{name}'")
        except ApiFailure as exc:
            exc.show()  # and go on with the other names
            failed += 1
    if failed:
        _exit(1)


@cli.command()
@click.argument("source", shell_complete=store_models)
@click.argument("destination")
def cp(source: str, destination: str) -> None:
    """Give a model a second name (no bytes are copied)."""
    from .api import Api

    Api.from_env()("POST", "/api/copy", {"source": source, "destination": destination})
    print(f"copied '{source}' to '{destination}'")


@cli.command("import")
@click.argument("items", nargs=-1, metavar="[PATH | NAME...]", shell_complete=paths)
@click.option("--name", "-n", help="model name for PATH (default: from the file name)")
@click.option("--copy", is_flag=True, help="always copy the bytes; never reflink or hard link")
@click.option("--bundled", is_flag=True, help="import the models that ship with the `bundled` extra (smollm2:135m)")
@click.option("--from", "tool", type=click.Choice(["ollama", "hf", "lmstudio"]),
              help="list, or import by NAME, the models Ollama, the Hugging Face cache or LM Studio keeps")
@click.option("--dir", "folder", type=click.Path(file_okay=False), help="that tool's models folder (default: its own)")
@click.option("--dry-run", is_flag=True, help="with --from: list what would be imported, import nothing")
@click.option("--all", "everything", is_flag=True, help="with --from: import every model there")
@click.option("--trust", is_flag=True, help="with --from: take files named by their sha256 (Ollama's blobs, the "
              "Hugging Face cache's) as what their names say, without hashing them")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def import_command(items: tuple[str, ...], name: str | None, copy: bool, bundled: bool, tool: str | None,
                   folder: str | None, dry_run: bool, everything: bool, trust: bool, as_json: bool) -> None:
    """Put a local GGUF file (all shards of a split one, and a vision projector, mmproj*.gguf, beside it)
    or an MLX model folder into the store, or, with --from, the models another tool already downloaded.

    The bytes are reflinked or hard-linked where the file system allows (else copied, or with --from
    symlinked) and hashed; the original is never changed, moved or deleted, and r1 refuses a model
    whose linked file changed after the import.
    """
    import os
    from pathlib import Path

    from .api import Api
    from .errors import CliError

    if tool is not None:
        if name or copy or bundled:
            raise CliError("--from imports models under their own names: leave out --name, --copy and --bundled")
        from .bring import bring

        bring(tool, items, folder, dry_run, everything, trust, as_json)
        return
    if folder or dry_run or everything or trust:
        raise CliError("--dir, --dry-run, --all and --trust go with --from ollama|hf|lmstudio")
    from .fetch import BUNDLED, bundled_path, default_name, import_model

    api = Api.from_env()
    if bundled:
        for bundled_name in BUNDLED:
            import_model(api, bundled_path(bundled_name), bundled_name, link=not copy)
        return
    if len(items) != 1:
        raise CliError("give one PATH to import, --bundled, or --from ollama|hf|lmstudio")
    source = Path(items[0])
    if not source.exists():
        raise CliError(f"no such file or folder: {source}")
    import_model(api, os.path.abspath(source), name or default_name(source), link=not copy)


@cli.command()
@click.argument("name", shell_complete=chat_models)
@click.argument("prompt", nargs=-1)
@click.option("--think", is_flag=True, help="ask the model to think first (and show its thinking even when piped)")
@click.option("--no-think", is_flag=True, help="ask the model not to think")
@click.option("--hidethinking", is_flag=True, help="never show the thinking")
@click.option("--verbose", is_flag=True, help="print timings and token rates after each answer")
@click.option("--format", type=click.Choice(["json"]), help="ask for an answer in JSON")
@click.option("--keepalive", metavar="DURATION", help="how long the model stays loaded (5m, 1h, seconds)")
@click.option("--nowordwrap", is_flag=True, help="do not wrap the answer at the terminal's width")
def run(name: str, prompt: tuple[str, ...], think: bool, no_think: bool, hidethinking: bool, verbose: bool,
        format: str | None, keepalive: str | None, nowordwrap: bool) -> None:
    """Chat with a model: answer PROMPT (or text piped to stdin), or talk at a `>>> ` prompt.

    A model the store lacks is fetched first (imported if bundled, else pulled). At the prompt,
    /? lists the commands, \"\"\" starts a multi-line message, Ctrl-C stops an answer, /bye leaves.
    """
    if think and no_think:
        raise click.UsageError("--think and --no-think cannot be used together")
    from .api import Api
    from .run import Session, run as run_session

    session = Session(Api.from_env(), name, think=True if think else False if no_think else None,
                      hide_thinking=hidethinking, verbose=verbose, wordwrap=not nowordwrap, format=format,
                      keep_alive=keepalive)
    run_session(session, " ".join(prompt))


@cli.command()
@click.argument("name")
@click.option("-f", "--file", default="Modelfile", type=click.Path(),
              help="the Modelfile (default: ./Modelfile)")
@click.option("--from", "source", metavar="MODEL", help="make NAME from this model alone, without a Modelfile "
              "(REMOTE:upstream-id for a remote engine's model)")
def create(name: str, file: str, source: str | None) -> None:
    """Create a model from a Modelfile (FROM, PARAMETER, SYSTEM, TEMPLATE, LICENSE, MESSAGE).

    FROM names a model in the store (pulled first when the store lacks it, as `r1 pull` would), a local
    .gguf file or MLX folder to import, or REMOTE:upstream-id, a model of a remote engine (`r1 remote
    models REMOTE` lists them).
    """
    from pathlib import Path

    from . import modelfile
    from .api import Api
    from .errors import CliError

    try:
        modelfile.create(Api.from_env(), name, {"from": source} if source is not None else modelfile.read(Path(file)))
    except modelfile.ModelfileError as exc:
        raise CliError(str(exc)) from exc


@cli.command()
@click.argument("tool", type=click.Choice(["claude", "codex", "opencode"]))
@click.option("--model", "-m", required=True, shell_complete=store_models, help="the model the tool uses")
@click.option("--exec", "run", is_flag=True, help="run the tool with them rather than print them")
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def launch(tool: str, model: str, run: bool, arguments: tuple[str, ...]) -> None:
    """Print (or, with --exec, run) what TOOL (Claude Code, Codex CLI, opencode) needs to use MODEL through r1.

    Checks first that MODEL can serve the tool (a chat template, tools, a context that holds the tool's
    prompt). Opens r1's TCP listener on loopback if it is off (Ollama's port, or a free one if that is
    taken). ARGUMENTS, after --, go to the tool: r1 launch claude -m MODEL --exec -- -p "hi"
    """
    from .launch import launch as start

    start(tool, model, run, list(arguments))


@cli.command()
@click.option("--print", "print_only", is_flag=True, help="print the console's URL instead of opening it")
def ui(print_only: bool) -> None:
    """Open the web console (loaded models, the store, chat, usage) in the browser.

    Opens r1's TCP listener on loopback if it is off; when R1_API_KEY is set, the page asks for it once.
    """
    from .ui import open_console

    open_console(print_only)


cli.add_command(remote)


@cli.command("help")
@click.argument("words", nargs=-1, metavar="[COMMAND]...")
def help_command(words: tuple[str, ...]) -> None:
    """Show the help of r1 or of one of its commands (`r1 help remote add`), as --help does."""
    from .commands import help_of

    click.echo(help_of(cli, words))


@cli.command()
def version() -> None:
    """Print the versions of this client and of the running daemon."""
    from .api import load_settings
    from .client import ApiError, Client, DaemonUnavailable
    from .render import say

    print(f"r1 version {__version__}")
    settings = load_settings()
    try:
        daemon = Client(settings.socket, timeout=5).version()
    except (DaemonUnavailable, ApiError, OSError):
        say(f"no daemon is running on {settings.socket}")
        return
    if daemon != __version__:
        say(f"Warning: the daemon on {settings.socket} is version {daemon}")


@cli.command("daemon")
@click.argument("action", type=click.Choice(["status", "stop", "restart"]))
def daemon_command(action: str) -> None:
    """Show, stop or restart the background daemon (the one r1 starts when none answers).

    status shows its pid, store and how it was started (exit status 3 when none runs); stop lets the
    requests in flight finish (R1_SHUTDOWN_GRACE) and unloads every model; restart stops it and starts
    one with this shell's environment. A daemon that `r1 service` runs is left to systemd or launchd:
    the command says what to run instead.
    """
    from .daemon_control import command

    _exit(command(action))


@cli.command()
@click.argument("action", type=click.Choice(["install", "uninstall", "status"]))
@click.option("--user", is_flag=True, help="a service of your own, started when you log in (the default)")
@click.option("--system", is_flag=True,
              help="a service for the machine, run as the user r1 (_r1 on macOS), started at boot; needs root")
@click.option("--dry-run", is_flag=True, help="print what would be written and run; change nothing")
@click.option("--platform", type=click.Choice(["linux", "darwin"]),
              help="with --dry-run: show what install or uninstall would do on that system")
@click.option("--tcp", is_flag=False, flag_value="127.0.0.1:11434", metavar="[HOST:PORT]",
              help="with install: listen on TCP too, on loopback (alone: Ollama's 127.0.0.1:11434), so apps "
                   "written for Ollama find r1 where they look")
def service(action: str, user: bool, system: bool, dry_run: bool, platform: str | None, tcp: str | None) -> None:
    """Run the daemon as a service: systemd (Linux) or launchd (macOS), for you or for the machine.

    install writes the unit or property list (filled from systemd/ or launchd/) and starts
    the service; uninstall stops it and removes the file (the store stays); status shows the
    service manager's view and whether a daemon answers. --dry-run prints the files and the
    commands instead.
    """
    if user and system:
        raise click.UsageError("--user and --system cannot be used together")
    from .service import command  # subprocess and the rest: for this command only

    _exit(command(action, system=system, dry_run=dry_run, platform=platform, tcp=tcp))


@cli.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the script that completes r1's commands, options and model names in SHELL.

    \b
    bash: add  eval "$(r1 completion bash)"  to ~/.bashrc
    zsh:  add  eval "$(r1 completion zsh)"  to ~/.zshrc (after compinit)
    fish: add  r1 completion fish | source  to ~/.config/fish/config.fish
    """
    click.echo(script(cli, shell), nl=False)


def main(argv: list[str] | None = None) -> int:
    """The `r1` console script: run one command; its exit status. Every error is shown here."""
    try:
        status = cli.main(argv, prog_name="r1", complete_var=COMPLETE_VAR, standalone_mode=False)
    except click.ClickException as exc:  # CliError, and click's own usage errors (exit status 2)
        exc.show()
        return exc.exit_code
    return status or 0  # None when a command ran to its end
