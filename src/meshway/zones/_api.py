"""Config entries and zones on the Admin API, in Consul's HTTP API shapes where Consul has them:

- `PUT /v1/config` (body: an entry as JSON or YAML, any key spelling) answers `true`;
- `GET /v1/config/{kind}` lists, `GET|DELETE /v1/config/{kind}/{name}`, entries as Consul
  prints them (with `CreateIndex`/`ModifyIndex`);
- `GET /zones`: this control plane's zone and the zones federation reached (Kuma's list shape
  `{"total", "items", "next"}`);
- gateways' registration and federation: `_gwapi`.
An entry Consul would refuse is a 400 `{"message": <Consul's text>}` and changes nothing.
Without a database (DB-less) entries are read-only, from the snapshot.
"""
from __future__ import annotations

from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshway.admin._http import JSONResponse

from . import DecodeError, EntryError, KINDS, check_entry, to_consul


def _message(status: int, text: str) -> JSONResponse:
    return JSONResponse({"message": text}, status_code=status)


def _bad_kind(kind: str) -> JSONResponse | None:
    if kind not in KINDS:
        return _message(400, f"invalid config entry kind: {kind}")
    return None


def _rows(ctx: Any, kind: str) -> list[dict[str, Any]]:
    """Stored rows, or the DB-less snapshot's entries (no indexes there)."""
    if ctx.store is not None:
        return ctx.store.config_entries.list(kind)
    entries = (ctx.dbless.snapshot or {}).get("config_entries") or []
    return [{"entry": e, "create_index": 0, "modify_index": 0} for e in entries if e.get("Kind") == kind]


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return to_consul(row["entry"], (row["create_index"], row["modify_index"]))


def zone_summary(ctx: Any) -> list[dict[str, Any]]:
    """The zones as `meshway get zones` shows them: this one first, then those federation reached
    (name, status, gateways, data planes, last sync)."""
    from ._catalog import local_gateways, remote_zones
    from ._federation import zone_status
    from ._gwapi import gateway_status

    snapshot = ctx.snapshot()
    dataplanes = (snapshot.get("mesh_resources") or {}).get("dataplanes") or []
    name = getattr(ctx.settings, "datacenter", "dc1") if ctx.settings is not None else "dc1"
    gateways = local_gateways(snapshot, every=True)
    items = [{"name": name, "local": True, "status": "Online", "gateways": len(gateways),
              "gatewayStatus": {g["ID"]: gateway_status(g) for g in gateways},
              "dataplanes": len(dataplanes), "lastSync": None}]
    for dc, zone in sorted(remote_zones(snapshot).items()):
        status, last = zone_status(dc)
        items.append({"name": dc, "local": False, "status": status, "gateways": len(zone.get("gateways") or ()),
                      "dataplanes": zone.get("dataplanes", 0),
                      "lastSync": last})
    return items


async def _forward(ctx: Any, method: str, path: str, entry: Any) -> JSONResponse | None:
    """At a secondary zone, a config entry write goes to the primary (Consul forwards it there);
    it comes back with the next federation exchange. None: this zone is the primary."""
    from ._federation import auth_headers, primary_url

    url = await ctx.call(primary_url, ctx.store, ctx.settings)
    if url is None:
        return None
    import httpx

    try:
        async with httpx.AsyncClient(timeout=10, headers=auth_headers(ctx.settings)) as client:
            answer = await client.request(method, url + path, json=entry)
    except httpx.HTTPError as e:
        return _message(503, f"the primary datacenter {ctx.settings.primary_datacenter!r} is unreachable "
                             f"({e}); config entries are written there")
    if answer.status_code >= 400:
        return JSONResponse(answer.json(), status_code=answer.status_code)
    return JSONResponse(True)


def config_entry_routes(ctx: Any) -> list[Route]:
    async def write(request: Request) -> Response:
        if ctx.store is None:
            return _message(405, "config entries are read-only without a database")
        raw = await request.body()
        try:
            body = yaml.safe_load(raw.decode("utf-8")) if raw.strip() else None
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            return _message(400, f"Request decode failed: {e}")
        try:
            entry = check_entry(body)
        except (DecodeError, EntryError) as e:
            return _message(400, str(e))
        forwarded = await _forward(ctx, "PUT", "/v1/config", entry)
        if forwarded is not None:
            return forwarded
        await ctx.call(ctx.store.config_entries.put, entry)
        return JSONResponse(True)

    async def list_kind(request: Request) -> Response:
        kind = request.path_params["kind"]
        return _bad_kind(kind) or JSONResponse([_shown(r) for r in await ctx.call(_rows, ctx, kind)])

    async def one(request: Request) -> Response:
        kind, name = request.path_params["kind"], request.path_params["name"]
        refused = _bad_kind(kind)
        if refused:
            return refused
        if request.method == "DELETE":
            if ctx.store is None:
                return _message(405, "config entries are read-only without a database")
            forwarded = await _forward(ctx, "DELETE", f"/v1/config/{kind}/{name}", None)
            if forwarded is not None:
                return forwarded
            await ctx.call(ctx.store.config_entries.delete, kind, name)
            return JSONResponse(True)  # Consul: deleting a missing entry is not an error
        rows = [r for r in await ctx.call(_rows, ctx, kind) if r["entry"]["Name"] == name]
        if not rows:
            return _message(404, f'Config entry not found for "{kind}" / "{name}"')
        return JSONResponse(_shown(rows[0]))

    async def zones(request: Request) -> Response:
        items = await ctx.call(zone_summary, ctx)
        return JSONResponse({"total": len(items), "items": items, "next": None})

    from ._gwapi import gateway_routes

    return [
        *gateway_routes(ctx),
        Route("/v1/config", write, methods=["PUT"]),
        Route("/v1/config/{kind}", list_kind, methods=["GET"]),
        Route("/v1/config/{kind}/{name}", one, methods=["GET", "DELETE"]),
        Route("/zones", zones, methods=["GET"]),
    ]
