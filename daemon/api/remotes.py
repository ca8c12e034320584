"""r1's own routes for remote engines (`r1 remote ...`), and remote models made with `r1 create --from
REMOTE:upstream-id`. Keys are written to $R1_HOME/remotes/ (mode 0600) or named by their environment
variable; no answer here ever carries one."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import BadRequest, NotFound
from ..redact import masked_url
from ..remote.engine import RemoteEngine
from ..remote.models import remote_manifest, remote_of
from ..remote.records import DIALECTS, Price, Remote
from ..store import Overrides, Store, parse_name
from ..store.private import key_path
from .context import CORE, REMOTE_RECORDS, SETTINGS, STORE
from .fields import check_path_length, required_str
from .http import must_finish, read_json

routes = web.RouteTableDef()
REMOTE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def shown(remote: Remote) -> dict[str, Any]:
    """A remote as `r1 remote list` shows it: where its key comes from, never the key; header values and
    a URL's password or key masked."""
    key = f"${remote.key_env}" if remote.key_env else "a key file" if remote.key_file else "none"
    return {"name": remote.name, "urls": [masked_url(url) for url in remote.urls], "dialect": remote.dialect,
            "key": key, "headers": {name: "***" for name in remote.headers}, "ca_file": remote.ca_file}


def check_remote(body: dict[str, Any], home: Path) -> tuple[Remote, str | None]:
    """The remote a POST /api/remotes asks for, and its key text when the request carries one."""
    check_path_length(body, "ca_file")
    name = required_str(body, "name")
    if not REMOTE_NAME.fullmatch(name):
        raise BadRequest(f"remote name {name!r} must be lowercase letters, digits, '-' or '_' (at most 64)")
    urls = body.get("urls")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise BadRequest("field 'urls' must be a list of one or more URLs")
    for url in urls:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
            raise BadRequest(f"{url!r} is not an http:// or https:// URL")
    dialect = body.get("dialect") or "openai"
    if dialect not in DIALECTS:
        raise BadRequest(f"dialect must be one of {', '.join(DIALECTS)}, not {dialect!r}")
    key_env, key = body.get("api_key_env"), body.get("api_key")
    if key_env is not None and (not isinstance(key_env, str) or not ENV_NAME.fullmatch(key_env)):
        raise BadRequest("field 'api_key_env' must be an environment variable's name")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise BadRequest("field 'api_key' must be the key's text")
    if key_env and key:
        raise BadRequest("give the key one way: 'api_key_env' (a variable of the daemon's environment) or 'api_key'")
    headers = body.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise BadRequest("field 'headers' must map header names to values")
    ca_file = body.get("ca_file")
    if ca_file is not None and not (isinstance(ca_file, str) and Path(ca_file).is_file()):
        raise BadRequest(f"ca_file {ca_file!r} is not a file the daemon can read")
    key_file = str(key_path(home, name)) if key else None
    return Remote(name, tuple(u.rstrip("/") for u in urls), dialect, key_env, key_file, headers, ca_file), key


def write_key(path: str, key: str) -> None:
    """The key in a file only the daemon's user can read (0600 in a 0700 folder), written whole or not at all."""
    target = Path(path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(target.parent, 0o700)
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)  # a new file, so 0600 holds whatever an old one's mode was
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.strip() + "\n")
    os.replace(partial, target)


@routes.get("/api/remotes")
async def list_remotes(request: web.Request) -> web.Response:
    remotes = await asyncio.to_thread(request.app[REMOTE_RECORDS].remotes)
    return web.json_response({"remotes": [shown(r) for r in remotes]})


@routes.post("/api/remotes")
@must_finish  # the key file and the remote's row together: no key left behind by a client that left
async def add_remote(request: web.Request) -> web.Response:
    remote, key = check_remote(await read_json(request), request.app[SETTINGS].home)
    if key is not None and remote.key_file:
        await asyncio.to_thread(write_key, remote.key_file, key)
    await asyncio.to_thread(request.app[REMOTE_RECORDS].put_remote, remote)
    return web.json_response(shown(remote))


@routes.delete("/api/remotes")
@must_finish  # the row and then the key file: a client that leaves between must not keep the key on disk
async def remove_remote(request: web.Request) -> web.Response:
    name = required_str(await read_json(request), "name")
    store: Store = request.app[STORE]
    users = [r.name for r in await asyncio.to_thread(store.models) if (remote_of(r.manifest) or ("",))[0] == name]
    if not await asyncio.to_thread(request.app[REMOTE_RECORDS].drop_remote, name):
        raise NotFound(f"no remote named {name!r}; `r1 remote list` shows them")
    key_path(request.app[SETTINGS].home, name).unlink(missing_ok=True)
    return web.json_response({"removed": name, "models_left": users})


async def upstream_models(engine: RemoteEngine) -> list[dict[str, Any]]:
    """What the upstream offers: [{"id", "context_length"?}], from /v1/models (vLLM adds max_model_len) or /api/tags."""
    if engine.remote.dialect == "openai":
        listing = await engine.get("/models")
        with engine.faults():  # a listing not of OpenAI's shape is the upstream's fault
            return [{"id": m["id"], **({"context_length": m["max_model_len"]} if m.get("max_model_len") else {})}
                    for m in listing.get("data") or []]
    listing = await engine.get("/api/tags")
    with engine.faults():
        return [{"id": m["name"]} for m in listing.get("models") or []]


@routes.get("/api/remotes/{name}/models")
async def remote_models(request: web.Request) -> web.Response:
    engine = await request.app[CORE].remotes.engine(request.match_info["name"])
    return web.json_response({"models": await upstream_models(engine)})


@routes.post("/api/remotes/price")
async def set_price(request: web.Request) -> web.Response:
    """{"model", "input", "output"}: US dollars per million tokens, for the remote model's upstream model."""
    body = await read_json(request)
    store: Store = request.app[STORE]
    record = await asyncio.to_thread(store.get, required_str(body, "model"))
    remote = remote_of(record.manifest)
    if remote is None:
        raise BadRequest(f"{record.name} is not a remote model: prices are for models an upstream answers")
    prices = []
    for field in ("input", "output"):
        value = body.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= sys.float_info.max:
            raise BadRequest(f"field '{field}' must be a price per million tokens, 0 or more")
        prices.append(float(value))
    upstream = f"{remote[0]}:{remote[1]}"
    await asyncio.to_thread(request.app[REMOTE_RECORDS].set_price, upstream, Price(*prices))
    return web.json_response({"model": record.name, "upstream": upstream, "input": prices[0], "output": prices[1]})


async def create_remote_model(request: web.Request, name: str, source: str, overrides: Overrides) -> dict[str, Any] | None:
    """`r1 create NAME --from REMOTE:upstream-id` when REMOTE is a remote; None when it is not one."""
    remote, _, upstream = source.partition(":")
    store: Store = request.app[STORE]
    known = await asyncio.to_thread(request.app[REMOTE_RECORDS].remotes)
    if not upstream or remote not in {r.name for r in known}:
        return None
    if overrides.template is not None:
        raise BadRequest(f"{source} is a remote engine's model: the upstream applies its own chat template; "
                         "leave TEMPLATE out")
    offered = await upstream_models(await request.app[CORE].remotes.engine(remote))
    model = next((m for m in offered if m["id"] == upstream), None)
    if model is None:
        raise NotFound(f"remote {remote} offers no model {upstream!r}; `r1 remote models {remote}` lists what it has")
    record = await asyncio.to_thread(store.add, parse_name(name),
                                     remote_manifest(remote, upstream, model.get("context_length"), overrides))
    return {"status": "success", "model": record.name, "digest": record.manifest_id}
