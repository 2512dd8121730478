"""gRPC's length-prefixed messages, as gRPC-Web and gRPC carry them in a body.

A frame is one flag byte (0x00 a message, 0x01 a compressed message, 0x80 gRPC-Web's trailers),
a 4-byte big-endian length, then that many bytes. A body is frames back to back.
"""
from __future__ import annotations

import struct

__all__ = ["TRAILERS", "frame", "split_frames", "trailer_block"]

TRAILERS = 0x80
_HEAD = struct.Struct(">BI")


def frame(flag: int, payload: bytes) -> bytes:
    """One frame."""
    return _HEAD.pack(flag, len(payload)) + payload


def split_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The whole frames at the start of `data`, and the bytes of an incomplete one after them."""
    frames: list[tuple[int, bytes]] = []
    at, end = 0, len(data)
    while end - at >= 5:
        flag, length = _HEAD.unpack_from(data, at)
        if end - at - 5 < length:
            break
        frames.append((flag, data[at + 5:at + 5 + length]))
        at += 5 + length
    return frames, data[at:]


def trailer_block(trailers: list[tuple[bytes, bytes]]) -> bytes:
    """gRPC-Web's trailer frame payload: `name:value` lines, names in lower case."""
    return b"".join(b"%s:%s\r\n" % (name.lower(), value) for name, value in trailers)
