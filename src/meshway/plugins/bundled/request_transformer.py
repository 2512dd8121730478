"""request-transformer: edits the upstream request's headers, query string, body, method and path.

Per section the order is Kong's: remove, rename, replace, add, append. `replace` acts only on
what exists, `add` only on what does not, `append` always (a header line more; a list value in
query strings and bodies). Values may hold `$(...)` templates (see `_template`). Body edits
need the body buffered, so the plugin asks for it only when its config has body edits.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS
from meshway.plugins.bundled import _body
from meshway.plugins.bundled._template import compile_template, render


def _pairs(items: list[str]) -> list[str]:
    for item in items:
        if ":" not in item:
            raise ValueError(f"invalid value: {item} (expected name:value)")
        compile_template(item.partition(":")[2])
    return items


class _Names(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    body: list[str] = Field(default_factory=list)
    headers: list[str] = Field(default_factory=list)
    querystring: list[str] = Field(default_factory=list)


class _Values(_Names):
    _check = field_validator("body", "headers", "querystring")(_pairs)


class _Replace(_Values):
    uri: str | None = None

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is not None:
            compile_template(value)
        return value


class RequestTransformerConfig(PluginConfig):
    """Kong's request-transformer schema."""

    http_method: Literal["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"] | None = None
    remove: _Names = Field(default_factory=_Names)
    rename: _Values = Field(default_factory=_Values)
    replace: _Replace = Field(default_factory=_Replace)
    add: _Values = Field(default_factory=_Values)
    append: _Values = Field(default_factory=_Values)


def _compiled(items: list[str]) -> list[tuple[str, Any]]:
    return [(n, compile_template(v)) for n, _, v in (i.partition(":") for i in items)]


def _renames(items: list[str]) -> list[tuple[str, str]]:
    return [(old, new) for old, _, new in (i.partition(":") for i in items)]


class _Section:
    """One section's operations (headers, querystring or body), compiled."""

    def __init__(self, conf: RequestTransformerConfig, section: str) -> None:
        self.remove = list(getattr(conf.remove, section))
        self.rename = _renames(getattr(conf.rename, section))
        self.replace = _compiled(getattr(conf.replace, section))
        self.add = _compiled(getattr(conf.add, section))
        self.append = _compiled(getattr(conf.append, section))
        self.any = bool(self.remove or self.rename or self.replace or self.add or self.append)


class RequestTransformer(Plugin):
    """Transforms the request before it is proxied."""

    name = "request-transformer"
    priority = 801
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    Config = RequestTransformerConfig

    def __init__(self, config: RequestTransformerConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.headers = _Section(config, "headers")
        self.query = _Section(config, "querystring")
        self.body = _Section(config, "body")
        self.uri = compile_template(config.replace.uri) if config.replace.uri is not None else None
        self.buffers_request = self.body.any

    def access(self, ctx: RequestContext) -> None:
        if self.config.http_method:
            ctx.set_method(self.config.http_method)
        if self.headers.any:
            self.transform_headers(ctx)
        if self.query.any:
            args = _body.decode_args(ctx.query)
            if _transform_fields(self.query, args, ctx, as_list=True):
                ctx.set_query(_body.encode_args(args))
        if self.body.any:
            self.transform_body(ctx)
        if self.uri is not None:
            ctx.set_path(render(self.uri, ctx))

    def transform_headers(self, ctx: RequestContext) -> None:
        ops = self.headers
        for name in ops.remove:
            ctx.remove_header(name)
        for old, new in ops.rename:
            value = ctx.get_header(old)
            if value is not None:
                ctx.remove_header(old)
                ctx.set_header(new, value)
        for name, value in ops.replace:
            if ctx.get_header(name) is not None:
                ctx.set_header(name, render(value, ctx))
        for name, value in ops.add:
            if ctx.get_header(name) is None:
                ctx.set_header(name, render(value, ctx))
        for name, value in ops.append:
            ctx.add_header(name, render(value, ctx))

    def transform_body(self, ctx: RequestContext) -> None:
        raw = ctx.read_body()
        kind, fields = _body.decode_body(ctx.get_header("content-type"), raw)
        if kind == _body.JSON and fields is None and not raw:
            fields = {}  # an empty JSON body can still receive added fields
        if fields is None:
            return
        if _transform_fields(self.body, fields, ctx, as_list=kind == _body.FORM):
            ctx.set_body(_body.encode_body(kind, fields))


def _transform_fields(ops: _Section, fields: dict[str, Any], ctx: Any, as_list: bool) -> bool:
    """Apply one section to a name -> value(s) dict; True when anything changed."""
    changed = False
    for name in ops.remove:
        changed |= fields.pop(name, None) is not None
    for old, new in ops.rename:
        if old in fields:
            fields[new] = fields.pop(old)
            changed = True
    wrap = (lambda v: [v]) if as_list else (lambda v: v)
    for name, value in ops.replace:
        if name in fields:
            fields[name] = wrap(render(value, ctx))
            changed = True
    for name, value in ops.add:
        if name not in fields:
            fields[name] = wrap(render(value, ctx))
            changed = True
    for name, value in ops.append:
        fields[name] = _appended(fields.get(name), render(value, ctx))
        changed = True
    return changed


def _appended(current: Any, value: str) -> list[Any]:
    if current is None:
        return [value]
    return [*current, value] if isinstance(current, list) else [current, value]


PLUGIN = RequestTransformer
