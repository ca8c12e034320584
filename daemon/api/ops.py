"""r1's own operational endpoints: Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from .context import METRICS, SCHEDULER

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(request.app[SCHEDULER]), content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"}, charset="utf-8")
