"""Gateways and federation on the Admin API.

- `PUT /v1/agent/service/register` (Consul's path and body, `Kind: mesh-gateway` only) registers a
  gateway; a gateway repeats it every few seconds (its TTL check, `_health`: a registration not
  repeated for `GATEWAY_TTL` seconds turns `critical` and takes no traffic); an unchanged one
  writes nothing.
- `PUT /v1/agent/service/deregister/{id}` removes it (a gateway does so when it stops).
- `GET /v1/zones/explain?source=DP&service=S&mesh=M`: where a call resolves across zones (`meshway
  explain` asks it when the destination is not in this zone).
- `GET /v1/zones/gateway-config` is the declarative document this zone's gateways run.
- `GET /v1/zones/federation` is this zone's summary for the other zones (`_catalog.summary`);
  `PUT` it with a zone's own summary to exchange (`_federation`).
"""
from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshway.admin._http import JSONResponse

from ._catalog import RegistrationError, gateway_config, gateway_record, summary

from ._health import deregister as forget_gateway, heartbeat, status_of

gateway_status = status_of  # a registered gateway's check, as `get zones` shows it


def _message(status: int, text: str) -> JSONResponse:
    return JSONResponse({"message": text}, status_code=status)


def gateway_routes(ctx: Any) -> list[Route]:
    async def register(request: Request) -> Response:
        if ctx.store is None:
            return _message(405, "gateways register with a control plane that has a database")
        try:
            record = gateway_record(json.loads(await request.body() or b"null"))
        except (ValueError, RegistrationError) as e:
            return _message(400, f"Request decode failed: {e}")
        await ctx.call(heartbeat, ctx.store, record)
        return JSONResponse(None)

    async def deregister(request: Request) -> Response:
        if ctx.store is None:
            return _message(405, "gateways register with a control plane that has a database")
        gid = request.path_params["id"]
        await ctx.call(forget_gateway, ctx.store, gid)
        return JSONResponse(None)

    async def config(request: Request) -> Response:
        snapshot = await ctx.call(ctx.snapshot)
        return JSONResponse(gateway_config(snapshot, getattr(ctx.settings, "datacenter", "dc1")))

    async def federation(request: Request) -> Response:
        if request.method == "PUT":  # a zone joining or exchanging: keep what it says, answer ours
            if ctx.store is None:
                return _message(405, "federation needs a control plane with a database")
            from ._federation import check_summary, learn

            own = getattr(ctx.settings, "datacenter", "dc1")
            try:
                theirs = check_summary(json.loads(await request.body() or b"null"), own)
            except ValueError as e:
                return _message(400, f"federation refused: {e}")
            primary = getattr(ctx.settings, "primary_datacenter", "") or own
            await ctx.call(learn, ctx.store, theirs, own, primary)
        return JSONResponse(summary(await ctx.call(ctx.snapshot), ctx.settings))

    async def explain(request: Request) -> Response:
        from ._dpview import explain_call

        q = request.query_params
        if not q.get("source") or not q.get("service"):
            return _message(400, "source and service are required")
        lines, routed = explain_call(await ctx.call(ctx.snapshot), q.get("mesh") or "default", q["source"], q["service"])
        return JSONResponse({"lines": lines, "routed": routed})

    return [
        Route("/v1/zones/explain", explain, methods=["GET"]),
        Route("/v1/agent/service/register", register, methods=["PUT"]),
        Route("/v1/agent/service/deregister/{id}", deregister, methods=["PUT"]),
        Route("/v1/zones/gateway-config", config, methods=["GET"]),
        Route("/v1/zones/federation", federation, methods=["GET", "PUT"]),
    ]
