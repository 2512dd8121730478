"""Config entries and zones on the Admin API, in Consul's HTTP API shapes where Consul has them:

- `PUT /v1/config` (body: an entry as JSON or YAML, any key spelling) answers `true`;
- `GET /v1/config/{kind}` lists, `GET|DELETE /v1/config/{kind}/{name}`, entries as Consul
  prints them (with `CreateIndex`/`ModifyIndex`);
- `GET /zones`: this control plane's zone (Kuma's list shape `{"total", "items", "next"}`).
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


def zone_summary(ctx: Any) -> dict[str, Any]:
    """This zone as `meshway get zones` shows it: name, status, gateways, data planes, last sync."""
    dataplanes = ctx.store.mesh.list("Dataplane") if ctx.store is not None else \
        ((ctx.dbless.snapshot or {}).get("mesh_resources") or {}).get("dataplanes") or []
    name = getattr(ctx.settings, "datacenter", "dc1") if ctx.settings is not None else "dc1"
    # One zone so far: the control plane answering is this zone, so it is online and has no sync
    # to report; gateways and remote zones come with federation.
    return {"name": name, "local": True, "status": "Online", "gateways": 0, "dataplanes": len(dataplanes),
            "lastSync": None}


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
            await ctx.call(ctx.store.config_entries.delete, kind, name)
            return JSONResponse(True)  # Consul: deleting a missing entry is not an error
        rows = [r for r in await ctx.call(_rows, ctx, kind) if r["entry"]["Name"] == name]
        if not rows:
            return _message(404, f'Config entry not found for "{kind}" / "{name}"')
        return JSONResponse(_shown(rows[0]))

    async def zones(request: Request) -> Response:
        items = [await ctx.call(zone_summary, ctx)]
        return JSONResponse({"total": len(items), "items": items, "next": None})

    return [
        Route("/v1/config", write, methods=["PUT"]),
        Route("/v1/config/{kind}", list_kind, methods=["GET"]),
        Route("/v1/config/{kind}/{name}", one, methods=["GET", "DELETE"]),
        Route("/zones", zones, methods=["GET"]),
    ]
