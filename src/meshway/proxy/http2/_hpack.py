"""A fast HPACK encoder for the header blocks the proxy sends (RFC 7541), used in place of hpack's.

Rules:
- The dynamic table is never used: the first block, and the first after the peer changes
  SETTINGS_HEADER_TABLE_SIZE, starts with a dynamic table size update to 0, so the peer's
  decoder never holds state of ours and no block depends on an earlier one.
- A field the static table holds whole is sent indexed (one byte for `:status: 200`); any other
  is a "literal without indexing" with the static table's name index when there is one.
- No Huffman coding: it costs more Python time than the bytes it saves on loopback and LANs.
- A field's encoding is therefore the same in every block: short ones are kept in a bounded
  process-wide cache (cleared when full), so a repeated field costs one dict lookup.
Why: hpack's encoder scans its dynamic table linearly per field and Huffman-codes in Python;
it was the largest single cost per proxied HTTP/2 response.
"""
from __future__ import annotations

from typing import Iterable

from hpack.table import HeaderTable

__all__ = ["FastEncoder"]

_STATIC = HeaderTable.STATIC_TABLE
_FULL = {field: i for i, field in reversed(list(enumerate(_STATIC, 1)))}
_NAME = {name: i for i, (name, _) in reversed(list(enumerate(_STATIC, 1)))}
# Encoded fields by (name, value): a field's bytes never depend on the block (no dynamic table),
# and most fields of a response repeat (server, content-type, via, grpc-status...).
_FIELDS: dict[tuple[bytes, bytes], bytes] = {}
_CACHE_MAX = 4096
_CACHED_FIELD_MAX = 256


def encode_int(value: int, bits: int, flags: int) -> bytes:
    """An HPACK integer with an N-bit prefix, the first byte's other bits set to `flags`."""
    limit = (1 << bits) - 1
    if value < limit:
        return bytes([flags | value])
    out = bytearray([flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(data: bytes) -> bytes:
    n = len(data)
    return (bytes([n]) if n < 127 else encode_int(n, 7, 0)) + data


class FastEncoder:
    """Drop-in for `hpack.Encoder` in an `h2` connection (only what h2 calls)."""

    def __init__(self) -> None:
        self._table_size = 4096
        self._announce = True

    @property
    def header_table_size(self) -> int:
        return self._table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._table_size = value
        self._announce = True

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        parts = [b"\x20"] if self._announce else []
        self._announce = False
        cache = _FIELDS
        for field in headers:
            try:
                out = cache.get(field)  # a tuple, or a HeaderTuple (same hash and equality)
            except TypeError:  # a list
                out = None
            if out is None:
                key = (field[0], field[1])
                out = encode_field(*key)
                if len(out) <= _CACHED_FIELD_MAX:
                    if len(cache) >= _CACHE_MAX:
                        cache.clear()
                    cache[key] = out
            parts.append(out)
        return b"".join(parts)


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field's representation (no dynamic table: it is the same in every block)."""
    idx = _FULL.get((name, value))
    if idx is not None:
        return encode_int(idx, 7, 0x80)
    nidx = _NAME.get(name)
    if nidx is not None:
        return encode_int(nidx, 4, 0x00) + _literal(value)
    return b"\x00" + _literal(name) + _literal(value)
