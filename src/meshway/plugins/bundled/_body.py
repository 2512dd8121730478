"""Request bodies and query strings as plugins edit them: JSON objects and urlencoded forms."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

JSON = "json"
FORM = "form"
MULTIPART = "multipart"


def body_kind(content_type: str | None) -> str | None:
    """Which body format a Content-Type names, if one we can edit."""
    if not content_type:
        return None
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct == "application/x-www-form-urlencoded":
        return FORM
    if ct == "application/json" or ct.endswith("+json"):
        return JSON
    if ct == "multipart/form-data":
        return MULTIPART
    return None


def decode_args(raw: str | bytes) -> dict[str, list[str]]:
    """A query string or urlencoded form as name -> values, in order."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    args: dict[str, list[str]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        args.setdefault(name, []).append(value)
    return args


def encode_args(args: dict[str, list[str]]) -> str:
    return urlencode([(k, v) for k, values in args.items() for v in values])


def decode_json_object(raw: bytes | None) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is empty, invalid or not an object."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def decode_body(content_type: str | None, raw: bytes | None) -> tuple[str | None, dict[str, Any] | None]:
    """(kind, fields) for a JSON object or a form body; (kind, None) when it cannot be parsed."""
    kind = body_kind(content_type)
    if kind == JSON:
        return kind, decode_json_object(raw)
    if kind == FORM:
        return kind, decode_args(raw or b"")
    return kind, None


def encode_body(kind: str, fields: dict[str, Any]) -> bytes:
    return encode_json(fields) if kind == JSON else encode_args(fields).encode()
