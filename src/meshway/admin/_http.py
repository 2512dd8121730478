"""Request bodies and responses in Kong's shapes.

Bodies: JSON, `application/x-www-form-urlencoded` and `multipart/form-data` (decoded as Kong's
arguments.lua does, then typed by the entity schema); anything else is 415. Responses are
`application/json; charset=utf-8` with keys sorted, nulls present.
"""
from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from meshway.model import Entity, EntityError, SchemaViolation, coerce_input, decode_form


class BodyError(EntityError):
    """The body cannot be decoded at all (malformed JSON, unknown content type)."""

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


class UnsupportedContentType(BodyError):
    """415: a content type the Admin API does not read."""

    status = 415

    def __init__(self) -> None:
        super().__init__("Unsupported Content Type")


class MethodNotAllowed(BodyError):
    """405, with Kong's message (DB-less writes say why)."""

    status = 405

    def __init__(self, message: str = "Method not allowed") -> None:
        super().__init__(message)


class JSONResponse(Response):
    """Kong's JSON: sorted keys, `application/json; charset=utf-8`."""

    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, sort_keys=True, ensure_ascii=False).encode()


def error_response(err: EntityError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, entity: Entity | None = None) -> Any:
    """The decoded body ({} when empty); form values are typed by `entity`'s schema."""
    body = await _decoded(request, entity)
    bad = _non_finite(body)
    if bad:  # `1e400` parses as infinity: stored, it would stop every later config from compiling
        raise SchemaViolation(bad)
    return body


def _non_finite(value: Any) -> Any:
    """The paths of infinite or NaN numbers, as schema-violation fields (None when there are none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "expected a finite number"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    found = {k: bad for k, v in items if (bad := _non_finite(v))}
    return found or None


async def _decoded(request: Request, entity: Entity | None) -> Any:
    ctype = content_type(request)
    if ctype == "multipart/form-data":
        return _typed(await _multipart_pairs(request), entity)
    raw = await request.body()
    if not raw.strip():
        return {}
    if ctype == "application/x-www-form-urlencoded":
        try:
            return _typed(parse_qsl(raw.decode("utf-8"), keep_blank_values=True), entity)
        except UnicodeDecodeError:
            raise BodyError("Cannot parse form body") from None
    if ctype in ("application/json", "") or ctype.endswith("+json"):
        return parse_json(raw)
    raise UnsupportedContentType()


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BodyError("Cannot parse JSON body") from None


async def _multipart_pairs(request: Request) -> list[tuple[str, Any]]:
    form = await request.form()
    pairs = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            value = (await value.read()).decode("utf-8", errors="replace")
        pairs.append((key, value))
    return pairs


def _typed(pairs: list[tuple[str, Any]], entity: Entity | None) -> dict[str, Any]:
    body = decode_form(pairs)
    return coerce_input(entity, body) if entity is not None else body
