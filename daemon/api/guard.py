"""The TCP listener's guard: Host names (DNS rebinding), browser Origins (CORS), the API key.

The Unix socket needs none of this: its file mode decides who may connect. On TCP any
web page the user opens can make the browser send requests to 127.0.0.1, so requests are
refused unless the Host header names the machine (a rebinding attack brings a foreign
name), a browser Origin is one the user allowed, and, when R1_API_KEY is set (required
for a non-loopback bind), the request carries it as a Bearer token (or in x-api-key, as Anthropic's clients send it).
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import re
import socket

from aiohttp import web

from ..config import Settings, is_loopback
from .console import is_console
from .context import SETTINGS
from .http import Handler, error_response

# As Ollama: pages served from the machine itself may call the API, on any port.
DEFAULT_ORIGINS = tuple(f"{scheme}://{host}{port}" for scheme in ("http", "https")
                        for host in ("localhost", "127.0.0.1", "[::1]") for port in ("", ":*"))
CORS = web.RequestKey("cors", dict)
# What browsers may send besides the simple headers: the API's own, and those the OpenAI and Anthropic
# JavaScript SDKs (Stainless-made) add to requests, their helpers' and pollers' included (and, as Ollama
# allows it, X-Stainless-Async of their Python siblings).
CORS_HEADERS = ", ".join((
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "X-Api-Key",
    "Anthropic-Version", "Anthropic-Beta", "Anthropic-Dangerous-Direct-Browser-Access",
    "OpenAI-Organization", "OpenAI-Project",
    "X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch",
    "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Retry-Count", "X-Stainless-Timeout",
    "X-Stainless-Async", "X-Stainless-Helper-Method", "X-Stainless-Helper", "X-Stainless-Poll-Helper",
    "X-Stainless-Custom-Poll-Interval"))


def _host_name(header: str) -> str:
    """The name in a Host header, without its port (IPv6 literals keep their brackets off)."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0].lower()
    return header.rsplit(":", 1)[0].lower() if header.count(":") == 1 else header.lower()


def host_allowed(header: str, settings: Settings) -> bool:
    name = _host_name(header)
    if is_loopback(name) or name in (h.lower() for h in settings.allowed_hosts):
        return True
    try:
        ipaddress.ip_address(name)  # an address literal cannot be a rebound name
        return True
    except ValueError:
        return False


@functools.lru_cache(maxsize=64)
def _origin_pattern(pattern: str) -> re.Pattern[str]:
    """An R1_ORIGINS pattern: * matches any run of characters, everything else only itself (the brackets of
    [::1] included: no character classes, as fnmatch would make of them)."""
    return re.compile(".*".join(map(re.escape, pattern.split("*"))), re.IGNORECASE)


def origin_allowed(origin: str, settings: Settings) -> bool:
    return any(_origin_pattern(pattern).fullmatch(origin) for pattern in (*DEFAULT_ORIGINS, *settings.origins))


def over_tcp(request: web.Request) -> bool:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    return sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)


def key_given(request: web.Request, key: str) -> bool:
    """The key as a Bearer token (OpenAI's and Ollama's clients) or in x-api-key (Anthropic's)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    given = [token.strip() if scheme.lower() == "bearer" else "", request.headers.get("x-api-key", "").strip()]
    return any(value and hmac.compare_digest(value.encode(), key.encode()) for value in given)


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not over_tcp(request):
        return await handler(request)
    settings = request.app[SETTINGS]
    host = request.headers.get("Host", "")
    if not host_allowed(host, settings):
        return error_response(request, 403, f"r1 does not answer for host {host!r} over TCP: it answers for loopback "
                                            "names, IP addresses and R1_ALLOWED_HOSTS (a guard against DNS rebinding)")
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin, settings):
        return error_response(request, 403, f"browser origin {origin!r} is not allowed; add it to R1_ORIGINS")
    cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}
    if request.method == "OPTIONS" and origin:  # a CORS preflight: answered before the key is asked for
        return web.Response(status=204, headers={**cors, "Access-Control-Allow-Methods": "GET, POST, DELETE, HEAD, OPTIONS",
                                                  "Access-Control-Allow-Headers": CORS_HEADERS,
                                                  "Access-Control-Max-Age": "600"})
    # The console's page is static and asks for the key itself; what it calls needs the key.
    page = request.method in ("GET", "HEAD") and is_console(request.path)
    if settings.api_key and not page and not key_given(request, settings.api_key):
        response = error_response(request, 401, "this r1 listener needs an API key: send Authorization: Bearer "
                                  "<R1_API_KEY> (or, as Anthropic's clients do, x-api-key: <R1_API_KEY>)",
                                  "invalid_api_key")
        response.headers["WWW-Authenticate"] = "Bearer"
        response.headers.update(cors)
        return response
    if cors:
        request[CORS] = cors
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: streamed answers get their CORS headers too, before the first byte."""
    response.headers.update(request.get(CORS, {}))
