"""A stored entry as `consul config read` prints it: the API struct's field order, empty fields
left out (Go's `omitempty`) except the plain structs Go always prints (`MeshGateway`, `Expose`),
durations as Go writes them (`15s`), 4-space indented JSON, then `CreateIndex` and `ModifyIndex`."""
from __future__ import annotations

import json
from typing import Any

from ._decode import format_duration
from ._schema import KINDS, ListOf, MapOf, Struct


def to_consul(entry: dict[str, Any], indexes: tuple[int, int] | None = None) -> dict[str, Any]:
    out = _struct(KINDS[entry["Kind"]], entry)
    if indexes is not None:
        out["CreateIndex"], out["ModifyIndex"] = indexes
    return out


def dumps(entry: dict[str, Any], indexes: tuple[int, int] | None = None) -> str:
    return json.dumps(to_consul(entry, indexes), indent=4, ensure_ascii=False)


def _struct(schema: Struct, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind, always in schema.fields:
        value = data.get(name)
        if _empty(value) and not always:
            continue
        out[name] = _value(kind, value)
    return out


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == 0 or value is False or value == [] or value == {}


def _value(kind: Any, value: Any) -> Any:
    if isinstance(kind, Struct):
        return _struct(kind, value or {})
    if isinstance(kind, ListOf):
        return [_value(kind.item, v) for v in value or ()]
    if isinstance(kind, MapOf):
        return {k: _value(kind.value, v) for k, v in sorted((value or {}).items())}
    if kind == "duration":  # stored as nanoseconds; already text when re-ordering an API answer
        return value if isinstance(value, str) else format_duration(value or 0)
    if kind == "opaque":
        return dict(sorted((value or {}).items()))
    return value
