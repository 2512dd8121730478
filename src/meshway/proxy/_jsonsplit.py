"""JSON decoding in small steps, so a thread decoding a big config lets the event loop run.

`json.loads` of a multi-megabyte snapshot is one C call that holds the GIL for its whole
duration (~100 ms for 10,000 routes), even in a worker thread. Here the outer levels (the frame,
the snapshot, its collections) are walked in Python and each entity is decoded by its own
`raw_decode` call; between calls the interpreter can hand the GIL to the loop thread.
"""
from __future__ import annotations

import json
from typing import Any

__all__ = ["loads_split"]

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"


def _skip(s: str, i: int) -> int:
    while i < len(s) and s[i] in _WS:
        i += 1
    return i


def _expect(s: str, i: int, char: str) -> int:
    if i >= len(s) or s[i] != char:
        raise ValueError(f"expected {char!r} at offset {i}")
    return _skip(s, i + 1)


def _object(s: str, i: int, depth: int) -> tuple[dict, int]:
    out: dict[str, Any] = {}
    i = _skip(s, i + 1)
    if i < len(s) and s[i] == "}":
        return out, i + 1
    while True:
        key, i = _DECODER.raw_decode(s, i)
        if not isinstance(key, str):
            raise ValueError(f"object key expected at offset {i}")
        i = _expect(s, _skip(s, i), ":")
        out[key], i = _value(s, i, depth - 1)
        i = _skip(s, i)
        if i < len(s) and s[i] == ",":
            i = _skip(s, i + 1)
            continue
        if i < len(s) and s[i] == "}":
            return out, i + 1
        _fail(s, i)


def _array(s: str, i: int, depth: int) -> tuple[list, int]:
    out: list[Any] = []
    i = _skip(s, i + 1)
    if i < len(s) and s[i] == "]":
        return out, i + 1
    while True:
        value, i = _value(s, i, depth - 1)
        out.append(value)
        i = _skip(s, i)
        if i < len(s) and s[i] == ",":
            i = _skip(s, i + 1)
            continue
        if i < len(s) and s[i] == "]":
            return out, i + 1
        _fail(s, i)


def _fail(s: str, i: int) -> Any:
    raise ValueError(f"invalid JSON at offset {i}")


def _value(s: str, i: int, depth: int) -> tuple[Any, int]:
    if depth > 0 and i < len(s):
        if s[i] == "{":
            return _object(s, i, depth)
        if s[i] == "[":
            return _array(s, i, depth)
    return _DECODER.raw_decode(s, i)


def loads_split(data: bytes | str, depth: int = 3) -> Any:
    """`json.loads`, walking the top `depth` levels in Python (entities below are one call each)."""
    s = data.decode() if isinstance(data, (bytes, bytearray)) else data
    value, end = _value(s, _skip(s, 0), depth)
    if _skip(s, end) != len(s):
        raise ValueError(f"extra data at offset {end}")
    return value
