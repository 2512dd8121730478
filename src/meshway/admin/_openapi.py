"""The OpenAPI 3 document, generated from the entity declarations (the same ones storage uses)."""
from __future__ import annotations

import functools
from typing import Any

import meshway
from meshway.model import ENTITIES, Entity

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERROR_SCHEMA = {"type": "object", "properties": {
    "message": {"type": "string"}, "name": {"type": "string"}, "code": {"type": "integer"},
    "fields": {"type": "object"}}}


def _schema(entity: Entity) -> dict[str, Any]:
    props = {name: {**field.openapi(), "nullable": not field.required} for name, field in entity.fields.items()}
    required = [n for n, f in entity.fields.items() if f.required and f.default is None and not f.auto]
    out: dict[str, Any] = {"type": "object", "description": entity.description, "properties": props}
    if required:
        out["required"] = required
    return out


def _responses(ref: str, ok: str = "200") -> dict[str, Any]:
    return {ok: {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}},
            "400": {"description": "Invalid input", "content": {"application/json": {"schema": _ERROR}}},
            "404": {"description": "Not found"}, "409": {"description": "Unique violation"}}


def _body(ref: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": ref}},
                        "application/x-www-form-urlencoded": {"schema": {"$ref": ref}}}}


def _paths(entity: Entity, base: str) -> dict[str, Any]:
    ref = f"#/components/schemas/{entity.name}"
    page = {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": ref}},
                                             "next": {"type": "string", "nullable": True}}}
    params = [{"name": n, "in": "query", "schema": {"type": "string"}} for n in ("size", "offset", "tags")]
    item = {"get": {"responses": _responses(ref)}, "put": {"requestBody": _body(ref), "responses": _responses(ref)},
            "patch": {"requestBody": _body(ref), "responses": _responses(ref)},
            "delete": {"responses": {"204": {"description": "Deleted"}}}}
    scope = [_path_param("parent_key", "id or name of the parent")] if "{parent_key}" in base else []
    return {
        base: {"parameters": scope, "get": {"parameters": params, "responses": {"200": {"description": "A page", "content": {
            "application/json": {"schema": page}}}}},
            "post": {"requestBody": _body(ref), "responses": _responses(ref, "201")}},
        base + "/{key}": {"parameters": [*scope, _path_param("key", f"id or {entity.endpoint_key or 'id'}")], **item},
    }


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


@functools.cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for entity in ENTITIES.values():
        paths.update(_paths(entity, f"/{entity.admin_path}"))
        for field in entity.foreign_fields.values():
            parent = ENTITIES[field.reference]
            nested = f"/{parent.admin_path}/{{parent_key}}/{entity.nested_path or entity.admin_path}"
            paths.update(_paths(entity, nested))
    schemas = {e.name: _schema(e) for e in ENTITIES.values()}
    return {"openapi": "3.0.3", "info": {"title": "meshway Admin API", "version": meshway.__version__},
            "paths": paths, "components": {"schemas": {**schemas, "Error": _ERROR_SCHEMA}}}
