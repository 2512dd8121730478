"""Admin API endpoints for the cluster status, as Starlette routes the node mounts.

On a control plane they describe the connected data planes; on any other node they exist too and
answer 400 with Kong's message (`kong/api/routes/clustering.lua`), so that a script pointed at
the wrong node is told why instead of getting a 404.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

NOT_CONTROL_PLANE = ("this endpoint is only available when meshway is "
                     "configured to run as Control Plane for the cluster")
PATHS = ("/clustering/data-planes", "/clustering/status", "/clustering/metrics")


def admin_routes(server: Any) -> list[Route]:
    """`GET /clustering/data-planes` (Kong 3 shape), `GET /clustering/status` (Kong 2.0 shape) and
    `GET /clustering/metrics` (meshway: the data planes' request counters, Prometheus text)."""

    async def data_planes(request: Request) -> JSONResponse:
        return JSONResponse({"data": server.data_planes(), "next": None})

    async def status(request: Request) -> JSONResponse:
        return JSONResponse(server.status_map(), headers={"Deprecation": "true"})

    async def metrics(request: Request) -> Response:
        return Response(server.traffic_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return [
        Route("/clustering/data-planes", data_planes, methods=["GET"]),
        Route("/clustering/status", status, methods=["GET"]),
        Route("/clustering/metrics", metrics, methods=["GET"]),
    ]


def refusing_admin_routes() -> list[Route]:
    """The same paths on a node that is not a control plane: 400, as Kong answers."""

    async def refuse(request: Request) -> JSONResponse:
        return JSONResponse({"message": NOT_CONTROL_PLANE}, status_code=400)

    return [Route(path, refuse, methods=["GET"]) for path in PATHS]
