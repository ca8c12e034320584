"""The web console: a static page (HTML, CSS, JavaScript shipped in the package) at /ui.

The page is no secret, so on TCP it is served without the API key (the guard still checks Host and
Origin); it asks for the key once and sends it with each API call it makes.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..errors import NotFound

PAGE_DIR = Path(__file__).resolve().parent.parent / "console"
CONTENT_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
PREFIX = "/ui"

routes = web.RouteTableDef()


def is_console(path: str) -> bool:
    """Whether `path` is the console's page or one of its assets."""
    return path == PREFIX or path.startswith(PREFIX + "/")


# The files the console is made of: a name in a URL is looked up here, never on the disk (where a
# 5,000-character name is an OSError, not a 404).
ASSETS = frozenset(p.name for p in PAGE_DIR.iterdir() if p.suffix in CONTENT_TYPES and p.is_file())


def _asset(name: str) -> web.Response:
    if name not in ASSETS:
        raise NotFound(f"the console has no file {name[:100]!r}; open {PREFIX}")
    path = PAGE_DIR / name
    kind = CONTENT_TYPES[path.suffix]
    # The page must never run in a frame of another site (clickjacking an unload or a delete).
    return web.Response(body=path.read_bytes(), content_type=kind, charset="utf-8",
                        headers={"Cache-Control": "no-cache", "X-Frame-Options": "DENY",
                                 "X-Content-Type-Options": "nosniff"})


@routes.get(PREFIX)
@routes.get(PREFIX + "/")
async def page(request: web.Request) -> web.Response:
    return _asset("index.html")


@routes.get(PREFIX + "/{name}")
async def asset(request: web.Request) -> web.Response:
    return _asset(request.match_info["name"])
