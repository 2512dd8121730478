"""response-transformer: edits response headers and JSON response bodies.

Order per section is Kong's: remove, rename, replace (only existing), add (only missing),
append. JSON edits apply when the upstream says `application/json`; they need the whole
body, so `body` holds chunks back and sends the transformed document with the last one
(`buffers_response` says so too, for an engine that buffers for us).
"""
from __future__ import annotations

import json
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.bundled import _body

JsonType = Literal["string", "boolean", "number"]


class _Names(BaseModel):
    # `json` would shadow BaseModel.json: the field is `json_`, spelled `json` in and out.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True)
    headers: list[str] = Field(default_factory=list)
    json_: list[str] = Field(default_factory=list, alias="json")


class _Values(_Names):
    @field_validator("headers", "json_")
    @classmethod
    def _pairs(cls, items: list[str]) -> list[str]:
        for item in items:
            if ":" not in item:
                raise ValueError(f"invalid value: {item} (expected name:value)")
        return items


class _Typed(_Values):
    json_types: list[JsonType] = Field(default_factory=list)


class ResponseTransformerConfig(PluginConfig):
    """Kong's response-transformer schema."""

    remove: _Names = Field(default_factory=_Names)
    rename: _Values = Field(default_factory=_Values)
    replace: _Typed = Field(default_factory=_Typed)
    add: _Typed = Field(default_factory=_Typed)
    append: _Typed = Field(default_factory=_Typed)


def _split(items: list[str]) -> list[tuple[str, str]]:
    return [(n, v) for n, _, v in (i.partition(":") for i in items)]


def _typed(section: _Typed) -> list[tuple[str, Any]]:
    types = section.json_types
    return [(n, _cast(v, types[i] if i < len(types) else "string")) for i, (n, v) in enumerate(_split(section.json_))]


def _cast(value: str, kind: str) -> Any:
    if kind == "number":
        number = float(value)
        return int(number) if number.is_integer() and "." not in value else number
    if kind == "boolean":
        return value.lower() == "true"
    return value


class ResponseTransformer(Plugin):
    """Transforms the response before it reaches the client."""

    name = "response-transformer"
    priority = 800
    Config = ResponseTransformerConfig

    def __init__(self, config: ResponseTransformerConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.h_remove, self.h_rename = config.remove.headers, _split(config.rename.headers)
        self.h_replace, self.h_add = _split(config.replace.headers), _split(config.add.headers)
        self.h_append = _split(config.append.headers)
        self.j_remove, self.j_rename = config.remove.json_, _split(config.rename.json_)
        self.j_replace, self.j_add, self.j_append = _typed(config.replace), _typed(config.add), _typed(config.append)
        self.has_json = bool(self.j_remove or self.j_rename or self.j_replace or self.j_add or self.j_append)
        self.buffers_response = self.has_json
        self.shared_key = f"response-transformer:{entity.get('id')}"

    def response(self, ctx: RequestContext) -> None:
        for name in self.h_remove:
            ctx.remove_response_header(name)
        for old, new in self.h_rename:
            value = ctx.get_response_header(old)
            if value is not None:
                ctx.remove_response_header(old)
                ctx.set_response_header(new, value)
        for name, value in self.h_replace:
            if ctx.get_response_header(name) is not None:
                ctx.set_response_header(name, value)
        for name, value in self.h_add:
            if ctx.get_response_header(name) is None:
                ctx.set_response_header(name, value)
        for name, value in self.h_append:
            ctx.add_response_header(name, value)
        if self.has_json and _body.body_kind(ctx.get_response_header("content-type")) == _body.JSON:
            ctx.shared[self.shared_key] = []  # body chunks, collected by `body`
            ctx.remove_response_header("content-length")  # the body is about to change

    def body(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes | None:
        """Collect a JSON response, then send it transformed at the end; other bodies pass."""
        parts = ctx.shared.get(self.shared_key)
        if parts is None:
            return None
        parts.append(chunk)
        if not eof:
            return b""  # held back until the whole JSON document is here
        raw = b"".join(parts)
        parts.clear()
        fields = _body.decode_json_object(raw)
        if fields is None:
            return raw
        self.transform_json(fields)
        return json.dumps(fields, separators=(",", ":")).encode()

    def transform_json(self, fields: dict[str, Any]) -> None:
        for name in self.j_remove:
            fields.pop(name, None)
        for old, new in self.j_rename:
            if old in fields:
                fields[new] = fields.pop(old)
        for name, value in self.j_replace:
            if name in fields:
                fields[name] = value
        for name, value in self.j_add:
            fields.setdefault(name, value)
        for name, value in self.j_append:
            current = fields.get(name)
            fields[name] = [value] if current is None else ([*current, value] if isinstance(current, list) else [current, value])


PLUGIN = ResponseTransformer
