"""Node endpoints: `GET /`, `/status`, `/plugins/enabled`, `/schemas/...`, `/openapi.json`."""
from __future__ import annotations

import socket
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import meshway
from meshway import plugins
from meshway.admin._context import AdminContext
from meshway.admin._http import JSONResponse, read_body
from meshway.admin._openapi import openapi_document
from meshway.model import ENTITIES, Entity, NotFound, snapshot_hash

TAGLINE = "Welcome to meshway"


def info_routes(ctx: AdminContext) -> list[Route]:
    async def root(request: Request) -> Response:
        return JSONResponse(await ctx.call(_root, ctx))

    async def status(request: Request) -> Response:
        return JSONResponse(await ctx.call(_status, ctx))

    async def enabled(request: Request) -> Response:
        return JSONResponse({"enabled_plugins": sorted(plugins.available_plugins())})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    return [
        Route("/", root, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/plugins/enabled", enabled, methods=["GET"]),
        Route("/schemas/plugins/{name}", plugin_schema, methods=["GET"]),
        Route("/schemas/{entity}", entity_schema, methods=["GET"]),
        Route("/schemas/{entity}/validate", validate_entity, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


def _root(ctx: AdminContext) -> dict[str, Any]:
    info = dict(ctx.node_info)
    info.pop("status", None)
    enabled = sorted({p["name"] for p in _all(ctx.reader(), "plugins")})
    available = {p.name: {"version": p.version, "priority": p.priority} for p in plugins.available_plugins().values()}
    return {
        "version": meshway.__version__,
        "hostname": socket.gethostname(),
        "node_id": None,
        "tagline": TAGLINE,
        "datacenter": getattr(ctx.settings, "datacenter", "dc1") if ctx.settings is not None else "dc1",
        "configuration": ctx.settings.redacted() if ctx.settings is not None else {},
        **info,
        "plugins": {"available_on_server": available,
                    "enabled_in_cluster": enabled},
    }


def _all(reader: Any, collection: str) -> list[dict]:
    rows, offset = reader.list(collection, size=1000)
    while offset:
        more, offset = reader.list(collection, size=1000, offset=offset)
        rows += more
    return rows


def _status(ctx: AdminContext) -> dict[str, Any]:
    provider = ctx.node_info.get("status")
    server = {"connections_accepted": 0, "connections_active": 0, "connections_handled": 0,
              "connections_reading": 0, "connections_writing": 0, "connections_waiting": 0, "total_requests": 0}
    if callable(provider):
        server.update(provider())
    out: dict[str, Any] = {"server": server}
    if ctx.store is not None:
        out["database"] = {"reachable": ctx.store.reachable()}
    else:
        out["database"] = {"reachable": True}
        out["configuration_hash"] = getattr(ctx.dbless, "hash", None) or snapshot_hash(ctx.dbless.snapshot)
    return out


def find_entity(name: str) -> Entity:
    for entity in ENTITIES.values():
        if name in (entity.name, entity.admin_path, entity.nested_path):
            return entity
    raise NotFound(f"No entity named '{name}'")


def describe_entity(entity: Entity) -> dict[str, Any]:
    return {
        "name": entity.name,
        "endpoint_key": entity.endpoint_key,
        "primary_key": ["id"],
        "cache_key": list(entity.cache_key) or None,
        "fields": [{name: field.describe()} for name, field in entity.fields.items()],
    }


async def entity_schema(request: Request) -> Response:
    return JSONResponse(describe_entity(find_entity(request.path_params["entity"])))


async def validate_entity(request: Request) -> Response:
    entity = find_entity(request.path_params["entity"])
    entity.validate(await read_body(request, entity))
    return JSONResponse({"message": "schema validation successful"})


async def plugin_schema(request: Request) -> Response:
    name = request.path_params["name"]
    cls = plugins.available_plugins().get(name)
    if cls is None:
        raise NotFound(f"No plugin named '{name}'")
    return JSONResponse({
        "name": cls.name, "priority": cls.priority, "version": cls.version, "protocols": list(cls.protocols),
        "fields": [{"config": {"type": "record", "json_schema": cls.Config.model_json_schema()}},
                   {"protocols": _protocols_field(cls)}],
    })


def _protocols_field(cls: type) -> dict:
    """Kong's plugin subschema `protocols` field (typedefs.protocols_http or typedefs.protocols),
    with this plugin's default: what a Kong client (deck) reads to fill and check it."""
    return {"type": "set", "required": True, "default": list(cls.default_protocols),
            "elements": {"type": "string", "one_of": cls.allowed_protocols()}}
