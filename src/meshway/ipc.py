"""Length-prefixed JSON frames between a node's master process and its proxy workers.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. Frames are
small except `config`, which carries a whole snapshot; the reader accepts frames up to
MAX_FRAME and reports anything larger as a protocol error rather than buffering it.
"""
from __future__ import annotations

import json
import struct
from typing import Any, Iterator

MAX_FRAME = 512 * 1024 * 1024
_LEN = struct.Struct(">I")


class FrameError(ValueError):
    """The peer sent something that is not a valid frame."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _LEN.pack(len(body)) + body


class FrameReader:
    """Feed bytes in, get complete messages out."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        self._buf += data
        while len(self._buf) >= 4:
            (size,) = _LEN.unpack_from(self._buf)
            if size > MAX_FRAME:
                raise FrameError(f"frame of {size} bytes exceeds {MAX_FRAME}")
            if len(self._buf) < 4 + size:
                return
            body = bytes(self._buf[4 : 4 + size])
            del self._buf[: 4 + size]
            try:
                message = json.loads(body)
            except ValueError as e:
                raise FrameError(f"invalid JSON frame: {e}") from None
            if not isinstance(message, dict):
                raise FrameError("frame is not a JSON object")
            yield message
