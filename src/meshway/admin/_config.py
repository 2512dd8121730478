"""`GET /config` (export) and `POST /config` (replace the whole configuration atomically).

POST accepts what Kong's does: a `config` field holding YAML/JSON text (JSON, form or multipart
body), or the declarative document itself as a JSON or YAML body. An invalid document is a 400
naming every bad path, and the previous configuration keeps serving.
"""
from __future__ import annotations

from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshway.admin._context import AdminContext
from meshway.admin._http import JSONResponse, content_type, read_body
from meshway.model import DeclarativeError, load_document, parse_declarative, to_declarative

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def config_routes(ctx: AdminContext) -> list[Route]:
    async def handler(request: Request) -> Response:
        if request.method == "GET":
            return await _export(ctx, request)
        return await _replace(ctx, request)

    return [Route("/config", handler, methods=["GET", "POST"])]


async def _export(ctx: AdminContext, request: Request) -> Response:
    document = to_declarative(await ctx.call(ctx.snapshot))
    if request.query_params.get("format") == "json":
        return JSONResponse(document)
    return JSONResponse({"config": yaml.safe_dump(document, sort_keys=False, allow_unicode=True)})


async def _document(request: Request) -> Any:
    if content_type(request) in YAML_TYPES:
        return load_document(await request.body())
    body = await read_body(request)
    if isinstance(body, dict) and "_format_version" not in body and "config" in body:
        return body["config"] if isinstance(body["config"], (dict, str)) else None
    return body


async def _replace(ctx: AdminContext, request: Request) -> Response:
    snapshot = parse_declarative(await _document(request) or {})
    async with ctx.config_lock:
        if ctx.store is not None:
            await ctx.call(ctx.store.import_snapshot, snapshot, replace=True)
        else:
            await _apply_dbless(ctx, snapshot)
    return JSONResponse(snapshot, status_code=201)


async def _apply_dbless(ctx: AdminContext, snapshot: dict) -> None:
    try:
        await ctx.dbless.apply(snapshot)
    except Exception as e:  # the node refused it (compile error...): the old config still serves
        raise DeclarativeError({"@document": f"failed to apply: {e}"}) from None
