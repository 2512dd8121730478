"""Kong's `$(...)` value templates for request-transformer, compiled once per config.

Supported expressions (the subset of Kong's Lua sandbox that configs use in practice):
`headers.name`, `headers["name"]`, `query_params.name`, `query_params["name"]`,
`uri_captures.name`, `uri_captures[1]`, `shared.name`, each optionally followed by
`or "default"`. A missing value renders as the default, or "". `\\$(` stays literal.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from meshway.plugins.bundled import _body

_SEGMENT = re.compile(r"(?<!\\)\$\((.*?)\)")
_EXPR = re.compile(
    r"""^\s*(headers|query_params|uri_captures|shared)"""
    r"""(?:\.([A-Za-z_][\w-]*)|\[\s*(["'])(.+?)\3\s*\]|\[\s*(\d+)\s*\])"""
    r"""(?:\s+or\s+(["'])(.*?)\6)?\s*$"""
)

Render = Callable[[Any], str]


def compile_template(text: str) -> Render | str:
    """A plain string when `text` has no template, else a function ctx -> rendered string."""
    parts: list[Any] = []
    pos = 0
    for m in _SEGMENT.finditer(text):
        parts.append(text[pos:m.start()].replace("\\$(", "$("))
        parts.append(_compile_expr(m.group(1)))
        pos = m.end()
    if not parts:
        return text.replace("\\$(", "$(")
    parts.append(text[pos:].replace("\\$(", "$("))
    return lambda ctx: "".join(p if isinstance(p, str) else p(ctx) for p in parts)


def render(value: Render | str, ctx: Any) -> str:
    return value if isinstance(value, str) else value(ctx)


def _compile_expr(expr: str) -> Callable[[Any], str]:
    m = _EXPR.match(expr)
    if m is None:
        raise ValueError(f"unsupported template expression: $({expr})")
    source, name, index, default = m.group(1), m.group(2) or m.group(4), m.group(5), m.group(7) or ""
    key = name if name is not None else index
    lookup = _LOOKUPS[source]
    return lambda ctx: _text(lookup(ctx, key), default)


def _text(value: Any, default: str) -> str:
    if value is None or value == "":
        return default
    return value if isinstance(value, str) else str(value)


def _header(ctx: Any, name: str) -> Any:
    return ctx.get_header(name)


def _query(ctx: Any, name: str) -> Any:
    values = _body.decode_args(ctx.query).get(name) if ctx.query else None
    return values[0] if values else None


def _capture(ctx: Any, name: str) -> Any:
    return ctx.uri_captures.get(name)


def _shared(ctx: Any, name: str) -> Any:
    return ctx.shared.get(name)


_LOOKUPS = {"headers": _header, "query_params": _query, "uri_captures": _capture, "shared": _shared}
