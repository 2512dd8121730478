"""Admin API endpoints for the cluster status, as Starlette routes the node mounts."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def admin_routes(server: Any) -> list[Route]:
    """`GET /clustering/data-planes` (Kong 3 shape) and `GET /clustering/status` (Kong 2.0 shape)."""

    async def data_planes(request: Request) -> JSONResponse:
        return JSONResponse({"data": server.data_planes(), "next": None})

    async def status(request: Request) -> JSONResponse:
        return JSONResponse(server.status_map())

    return [
        Route("/clustering/data-planes", data_planes, methods=["GET"]),
        Route("/clustering/status", status, methods=["GET"]),
    ]
