"""r1's own operational endpoints: Prometheus metrics, the TCP listener that coding agents need, and the
daemon itself (what it was started with, and stopping it: `r1 daemon`)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from aiohttp import web

from .. import __version__
from ..config import SECRET_SETTINGS, external_set, is_loopback, service_manager, whole_number
from ..errors import BadRequest, Forbidden, ServiceUnavailable
from .context import LISTENER, METRICS, SCHEDULER, SETTINGS
from .fields import get_str
from .guard import over_tcp
from .http import read_json
from .peer import peer_of

STARTED = time.time()  # when the daemon started, near enough: its modules load first

# Ollama's port first, as apps that know Ollama look there; any free port when it is taken.
DEFAULT_TCP = ("127.0.0.1", 11434)

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(request.app[SCHEDULER]), content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"}, charset="utf-8")


def _listening(request: web.Request) -> web.Response:
    listener = request.app[LISTENER]
    address = listener.address
    return web.json_response({"address": f"{address[0]}:{address[1]}" if address else None,
                              "key_required": bool(request.app[SETTINGS].api_key)})


@routes.get("/api/tcp")
async def tcp_listener(request: web.Request) -> web.Response:
    if LISTENER not in request.app:
        raise ServiceUnavailable("this daemon has no TCP listener to report (it was not started by `r1 serve`)")
    return _listening(request)


@routes.post("/api/tcp")
async def open_tcp_listener(request: web.Request) -> web.Response:
    """{"host"?: "127.0.0.1:PORT"}: listen on TCP too, on loopback only (R1_HOST sets any other address)."""
    if over_tcp(request):
        raise Forbidden("the TCP listener is opened over the Unix socket only")
    if LISTENER not in request.app:
        raise ServiceUnavailable("this daemon cannot open a TCP listener (it was not started by `r1 serve`)")
    asked = get_str(await read_json(request), "host")
    host, port = DEFAULT_TCP
    if asked:
        host, _, text = asked.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        port_asked = whole_number(text, 0, 65535)  # 0: a free port
        if port_asked is None or not is_loopback(host):
            raise BadRequest(f"host {asked!r} must be a loopback HOST:PORT such as 127.0.0.1:11434 (R1_HOST at the "
                             "daemon's start listens anywhere else, with R1_API_KEY)")
    try:
        await request.app[LISTENER].open(host, port)
    except OSError as exc:
        if asked:
            raise BadRequest(f"cannot listen on {asked}: {exc.strerror}") from exc
        await request.app[LISTENER].open(host, 0)  # Ollama's port is taken (by Ollama, most likely)
    return _listening(request)


@routes.get("/api/daemon")
async def daemon_facts(request: web.Request) -> web.Response:
    """The daemon's process, and the environment it was started with: a later command's environment does not
    reach it, so the CLI compares its own with this (`r1 daemon status` shows it). Over the Unix socket only:
    paths and settings are nobody's business on the network."""
    if over_tcp(request):
        raise Forbidden("the daemon's facts are told over its Unix socket only (`r1 daemon status`)")
    environment = request.app[SETTINGS].as_env()
    for variable in SECRET_SETTINGS:
        environment[variable] = "set" if environment[variable] else ""
    environment |= {variable: "set" if present else "" for variable, present in external_set().items()}
    return web.json_response({"pid": os.getpid(), "uid": os.getuid(), "r1_version": __version__,
                              "started_at": STARTED, "service": service_manager(), "environment": environment})


@routes.post("/api/shutdown")
async def shutdown(request: web.Request) -> web.Response:
    """Stop the daemon as SIGTERM does (requests in flight get R1_SHUTDOWN_GRACE to finish): over the Unix
    socket only, for the daemon's own user or root."""
    peer = peer_of(request)
    if peer.kind != "unix":
        raise Forbidden("the daemon can be stopped over its Unix socket only (`r1 daemon stop`)")
    if peer.uid not in (os.getuid(), 0):
        raise Forbidden(f"only the daemon's own user (uid {os.getuid()}) or root may stop it")
    # After this answer has gone out; the signal handler of `r1 serve` starts the graceful shutdown.
    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)
    return web.json_response({"status": "stopping", "pid": os.getpid()})
