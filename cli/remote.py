"""`r1 remote ...`: the remote engines (another Ollama, an OpenAI-compatible provider) whose models r1 serves."""

from __future__ import annotations

import click

from .commands import JSON_HELP, Commands, print_json

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import Price, Remote, RemoteRemoved, Remotes, UpstreamModels


@click.group(cls=Commands)
def remote() -> None:
    """Remote engines (an OpenAI-compatible provider or vLLM, another Ollama) whose models r1 serves."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--url", "more_urls", multiple=True, metavar="URL", help="another URL of the same engine (a pool)")
@click.option("--api-key-env", metavar="VAR", help="the daemon's environment variable that holds the key")
@click.option("--api-key-file", type=click.Path(exists=True, dir_okay=False),
              help="a file holding the key; r1 keeps a copy only its user can read")
@click.option("--dialect", type=click.Choice(["openai", "ollama"]), default="openai", show_default=True)
@click.option("--header", "headers", multiple=True, metavar="NAME=VALUE", help="a header sent with every request")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="certificates of a private CA")
def remote_add(name: str, url: str, more_urls: tuple[str, ...], api_key_env: str | None, api_key_file: str | None,
               dialect: str, headers: tuple[str, ...], ca_file: str | None) -> None:
    """Add (or change) remote engine NAME at URL (an OpenAI base URL such as https://host/v1)."""
    import os

    from .api import Api, ApiFailure
    from .errors import CliError
    from .render import say

    if api_key_env and api_key_file:
        raise CliError("give the key one way: --api-key-env or --api-key-file")
    body: dict[str, object] = {"name": name, "urls": [url, *more_urls], "dialect": dialect}
    if api_key_env:
        body["api_key_env"] = api_key_env
    if api_key_file:
        with open(api_key_file) as key:
            body["api_key"] = key.read().strip()
    if ca_file:
        body["ca_file"] = os.path.abspath(ca_file)
    pairs = [h.partition("=") for h in headers]
    if any(not sep or not key for key, sep, _ in pairs):
        raise CliError("--header takes NAME=VALUE")
    body["headers"] = {key.strip(): value.strip() for key, _, value in pairs}
    api = Api.from_env()
    shown: Remote = api.read("POST", "/api/remotes", body)
    print(f"added remote {shown['name']} ({shown['dialect']}, {', '.join(shown['urls'])}; key: {shown['key']})")
    try:  # a wrong URL or key shows now, not at the first request of a model made from it
        api("GET", f"/api/remotes/{shown['name']}/models")
    except ApiFailure as exc:
        say(f"Warning: r1 could not list the models of remote {shown['name']}, so its models will fail until it "
            f"answers: {exc}")


@remote.command("list")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def remote_list(as_json: bool) -> None:
    """The remote engines, with where each one's key comes from (never the key)."""
    from . import render
    from .api import Api

    listed: Remotes = Api.from_env().read("GET", "/api/remotes")
    remotes = listed["remotes"]
    if as_json:
        print_json(remotes)
        return
    print(render.table(("NAME", "DIALECT", "URLS", "KEY"),
                       [(r["name"], r["dialect"], " ".join(r["urls"]), r["key"]) for r in remotes]))


@remote.command("rm")
@click.argument("name")
def remote_rm(name: str) -> None:
    """Forget remote engine NAME and its key (its models' names stay, and fail until it is added again)."""
    from .api import Api

    answer: RemoteRemoved = Api.from_env().read("DELETE", "/api/remotes", {"name": name})
    left = answer["models_left"]
    print(f"removed remote {name}" + (f"; models still naming it: {', '.join(left)}" if left else ""))


@remote.command("models")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def remote_models(name: str, as_json: bool) -> None:
    """The models remote engine NAME offers (use one with `r1 create NEW --from NAME:ID`)."""
    from . import render
    from .api import Api

    offered: UpstreamModels = Api.from_env().read("GET", f"/api/remotes/{name}/models")
    models = offered["models"]
    if as_json:
        print_json(models)
        return
    print(render.table(("ID", "CONTEXT"), [(m["id"], str(m.get("context_length", ""))) for m in models]))


@remote.command("price")
@click.argument("model")
@click.option("--input", "input_price", type=float, required=True, help="US dollars per million prompt tokens")
@click.option("--output", "output_price", type=float, required=True, help="US dollars per million output tokens")
def remote_price(model: str, input_price: float, output_price: float) -> None:
    """Set what remote model MODEL costs, so that answers carry their cost."""
    from .api import Api

    answer: Price = Api.from_env().read("POST", "/api/remotes/price",
                                        {"model": model, "input": input_price, "output": output_price})
    print(f"{answer['upstream']}: ${answer['input']:g} in, ${answer['output']:g} out per million tokens")
