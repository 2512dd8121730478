"""The OpenAPI 3 document, generated from the entity declarations (the same ones storage uses).

Rules, so that the document says what the API answers (a schemathesis run checks it):
- Each entity has two schemas: `<name>` is what the API returns (every field present, any value
  may be null except the id, nested records too), `<name>_input` what it takes (required fields
  required, the parent's reference left out on nested paths, where the path sets it).
- Every status an operation can answer is listed, each 4xx with Kong's error body: 400 (bad
  input or query), 404 (no such entity or parent), 405 (writes on a DB-less node), 409 (unique
  violation), 415 (a body that is neither JSON nor a form).
- Links join a create to the item's operations and to its nested collections
  (`POST /services` -> `/services/{parent_key}/routes`), so stateful clients reach them.
"""
from __future__ import annotations

import functools
import re
from typing import Any

import meshway
from meshway.admin._openapi_input import input_schema, key_schema
from meshway.model import ENTITIES, Entity

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERROR_SCHEMA = {"type": "object", "required": ["message"], "properties": {
    "message": {"type": "string"}, "name": {"type": "string"}, "code": {"type": "integer"},
    "fields": {"type": "object"}}}
_ERRORS = {"400": "Invalid input or query", "404": "Not found", "405": "Not allowed on a DB-less node",
           "409": "Unique violation", "415": "Unsupported content type"}
_OBJECT = {"type": "object"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(_ERROR, _ERRORS[code]) for code in codes}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """A returned value: it and everything inside it may be null (Kong sends unset fields as null)."""
    out = {**schema, "nullable": True}
    if "properties" in out:
        out["properties"] = {k: _nullable(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _nullable(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _nullable(out["additionalProperties"])
    return out


def _output_schema(entity: Entity) -> dict[str, Any]:
    props = {name: _nullable(field.openapi()) for name, field in entity.fields.items()}
    props["id"] = {"type": "string", "format": "uuid"}
    for name in entity.companions:
        props[name] = {"type": "array", "items": {"type": "string"}}
    return {"type": "object", "description": entity.description, "properties": props, "required": sorted(props)}


def _op_id(method: str, path: str) -> str:
    return method + "_" + re.sub(r"[^a-zA-Z0-9]+", "_", path).strip("_")


def _body(ref: str) -> dict[str, Any]:
    return {"required": False, "content": {"application/json": {"schema": {"$ref": ref}}}}


class _Scope:
    """One collection path of an entity: top level, or nested under a parent reference."""

    def __init__(self, entity: Entity, parent_field: str | None = None) -> None:
        self.entity, self.parent_field = entity, parent_field
        if parent_field is None:
            self.base, self.input = f"/{entity.admin_path}", entity.name + "_input"
        else:
            parent = ENTITIES[entity.fields[parent_field].reference]
            self.base = f"/{parent.admin_path}/{{parent_key}}/{entity.nested_path or entity.admin_path}"
            self.input = f"{entity.name}_input_{parent_field}"
        self.item = self.base + "/{key}"

    @property
    def nested(self) -> bool:
        return self.parent_field is not None

    def paths(self) -> dict[str, Any]:
        ref = f"#/components/schemas/{self.entity.name}"
        in_ref = f"#/components/schemas/{self.input}"
        scope = [_path_param("parent_key", "id or name of the parent")] if self.nested else []
        maybe_404 = ("404",) if self.nested else ()
        created = {"201": {**_json({"$ref": ref}, "Created"), "links": self.links("201")}}
        replaced = {"200": {**_json({"$ref": ref}, "Created or replaced"), "links": self.links("200")}}
        return {
            self.base: {"parameters": scope,
                        "get": self._op("get", self.base, {"parameters": _page_params(),
                                                           "responses": {"200": _json(_page(ref), "A page"),
                                                                         **_errors("400", *maybe_404)}}),
                        "post": self._op("post", self.base, {"requestBody": _body(in_ref), "responses": {
                            **created, **_errors("400", *maybe_404, "405", "409", "415")}})},
            self.item: {"parameters": [*scope, {**_path_param("key", f"id or {self.entity.endpoint_key or 'id'}"),
                                                "schema": key_schema(self.entity)}],
                        "get": self._op("get", self.item, {"responses": {"200": _json({"$ref": ref}, "The entity"),
                                                                         **_errors("404")}}),
                        "put": self._op("put", self.item, {"requestBody": _body(in_ref), "responses": {
                            **replaced, **_errors("400", *maybe_404, "405", "409", "415")}}),
                        "patch": self._op("patch", self.item, {"requestBody": _body(in_ref), "responses": {
                            "200": _json({"$ref": ref}, "Updated"), **_errors("400", "404", "405", "409", "415")}}),
                        "delete": self._op("delete", self.item, {"responses": {
                            "204": {"description": "Deleted (or there was nothing)"}, **_errors("400", *maybe_404, "405")}})},
        }

    def _op(self, method: str, path: str, op: dict[str, Any]) -> dict[str, Any]:
        return {"operationId": _op_id(method, path), "tags": [self.entity.name], **op}

    def links(self, status: str) -> dict[str, Any]:
        """From a created entity to its item operations and to the collections nested under it."""
        params = {"key": "$response.body#/id"}
        if self.nested:
            params["parent_key"] = "$request.path.parent_key"
        out = {f"{m.upper()}Item": {"operationId": _op_id(m, self.item), "parameters": params}
               for m in ("get", "patch", "put", "delete")}
        for child, fname in _children(self.entity):
            nested = _Scope(child, fname)
            for m in ("get", "post"):
                out[f"{m.upper()}_{child.name}_{fname}"] = {
                    "operationId": _op_id(m, nested.base), "parameters": {"parent_key": "$response.body#/id"}}
        return out


def _children(entity: Entity) -> list[tuple[Entity, str]]:
    return [(child, fname) for child in ENTITIES.values()
            for fname, field in child.foreign_fields.items() if field.reference == entity.name and child.admin_api]


def _page(ref: str) -> dict[str, Any]:
    return {"type": "object", "required": ["data", "next"], "properties": {
        "data": {"type": "array", "items": {"$ref": ref}},
        "next": {"type": "string", "nullable": True}, "offset": {"type": "string"}}}


def _page_params() -> list[dict[str, Any]]:
    return [{"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            {"name": "offset", "in": "query", "schema": {"type": "string"}},
            {"name": "tags", "in": "query", "schema": {"type": "string"}}]


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def _node_paths() -> dict[str, Any]:
    def get(path: str, description: str, *codes: str) -> dict[str, Any]:
        return {"get": {"operationId": _op_id("get", path), "tags": ["node"],
                        "responses": {"200": _json(_OBJECT, description), **_errors(*codes)}}}

    tag_page = {"type": "object", "required": ["data", "next"], "properties": {
        "data": {"type": "array", "items": {"type": "object", "properties": {
            "entity_name": {"type": "string"}, "entity_id": {"type": "string"}, "tag": {"type": "string"}}}},
        "next": {"type": "string", "nullable": True}, "offset": {"type": "string"}}}
    tags = {"operationId": "get_tags", "tags": ["node"], "parameters": _page_params()[:2],
            "responses": {"200": _json(tag_page, "Tagged entities"), **_errors("400")}}
    config_post = {"operationId": "post_config", "tags": ["node"], "requestBody": _body("#/components/schemas/Document"),
                   "responses": {"201": _json(_OBJECT, "Applied (DB-less nodes)"), **_errors("400", "415")}}
    return {
        "/": get("/", "The node: version, configuration, plugins"),
        "/status": get("/status", "Health and counters"),
        "/tags": {"get": tags},
        "/tags/{tag}": {"parameters": [_path_param("tag", "a tag")], "get": {**tags, "operationId": "get_tags_tag"}},
        "/config": {"get": get("/config", "The whole configuration as a declarative document")["get"],
                    "post": config_post},
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = _node_paths()
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA, "Document": {"type": "object", "properties": {
        "config": {"type": "string"}, "_format_version": {"type": "string"}}}}
    for entity in ENTITIES.values():
        schemas[entity.name] = _output_schema(entity)
        if not entity.admin_api:
            continue
        for scope in (_Scope(entity), *(_Scope(entity, f) for f in entity.foreign_fields)):
            paths.update(scope.paths())
            schemas[scope.input] = input_schema(entity, scope.parent_field)
    _group_with_members(paths)
    return {"openapi": "3.0.3", "info": {"title": "meshway Admin API", "version": meshway.__version__},
            "paths": paths, "components": {"schemas": schemas}}


def _group_with_members(paths: dict[str, Any]) -> None:
    """`GET /consumer_groups/{key}` answers Kong Enterprise's `{consumer_group, consumers, plugins}`
    (`_consumer_groups`), not the bare entity the generic item path has."""
    item = paths.get("/consumer_groups/{key}")
    if item is None:
        return
    schema = {"type": "object", "required": ["consumer_group", "consumers", "plugins"], "properties": {
        "consumer_group": {"$ref": "#/components/schemas/consumer_groups"},
        "consumers": {"type": "array", "items": {"$ref": "#/components/schemas/consumers"}},
        "plugins": {"type": "array", "items": {"$ref": "#/components/schemas/plugins"}}}}
    item["get"]["responses"]["200"] = _json(schema, "The group with its consumers and plugins")
    counter = {"name": "counter", "in": "query", "schema": {"type": "boolean"},
               "description": "add each group's consumers_count (Kong Enterprise)"}
    item["get"]["parameters"] = [counter]
    collection = paths["/consumer_groups"]["get"]
    collection["parameters"] = [*collection["parameters"], counter]
