"""`GET /config` (export) and `POST /config` (replace the whole configuration atomically).

POST accepts what Kong's does: a `config` field holding YAML/JSON text (JSON, form or multipart
body), or the declarative document itself as a JSON or YAML body. An invalid document is a 400
naming every bad path, and the previous configuration keeps serving.

On a node with a database a plain POST is refused with Kong's 400 before the body is read: it would
replace every entity of the database (`meshway config db_import` is the deliberate way to load a
file into a database). A document naming select tags in `_info.select_tags` (what decK writes in
its files for `--select-tag`) is the exception: it replaces, in one transaction, exactly the
entities carrying every one of those tags (see `_config_tagged`); the ingress controller uses it.
"""
from __future__ import annotations

from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshway.admin._config_tagged import replace_tagged
from meshway.admin._context import AdminContext
from meshway.admin._http import BodyError, JSONResponse, content_type, read_body
from meshway.model import DeclarativeError, EntityError, load_document, parse_declarative, to_declarative

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
NOT_DBLESS = "this endpoint is only available when meshway is configured to not use a database"


class ConfigNotSaved(BodyError):
    """500: the new configuration serves but could not be saved; the node put the old one back."""

    status = 500


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
    if ctx.store is not None:
        return await replace_tagged(ctx, await _tagged_document(request))
    snapshot = parse_declarative(await _document(request) or {})
    async with ctx.config_lock:
        await _apply_dbless(ctx, snapshot)
    return JSONResponse(snapshot, status_code=201)


async def _tagged_document(request: Request) -> dict:
    """The body of a POST to a node with a database, if it is a tagged document; else Kong's 400."""
    try:
        document = load_document(await _document(request) or {})
    except EntityError:  # not even a document: the plain refusal, as before
        raise BodyError(NOT_DBLESS) from None
    if not isinstance(document.get("_info"), dict) or "select_tags" not in document["_info"]:
        raise BodyError(NOT_DBLESS)
    return document


async def _apply_dbless(ctx: AdminContext, snapshot: dict) -> None:
    try:
        await ctx.dbless.apply(snapshot)
    except OSError as e:  # applied, but not saved for the next start: the node rolled back
        raise ConfigNotSaved(f"could not save the configuration: {e.strerror or e}") from None
    except Exception as e:  # the node refused it (compile error...): the old config still serves
        raise DeclarativeError({"@document": f"failed to apply: {e}"}) from None
