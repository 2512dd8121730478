"""gRPC-Web <-> gRPC for one request: what the content type says, and the body both ways.

Rules (Kong's grpc-web `deco`, kept):
- The request's content type picks three things: text encoding (`-text` types are base64),
  framing (the gRPC-Web ones carry length-prefixed frames; plain `application/json` carries one
  bare JSON message), and message encoding (`+json` and `application/json` are JSON, which
  needs the plugin's `proto` to know the message types; the others are protobuf, passed as is).
- The response goes back in the request's content type: frames re-encoded (JSON when asked),
  base64 for `-text`, and the upstream's trailers as a last frame with flag 0x80.
- Base64 is written in 3-byte groups so that a client decoding the stream sees padding only at
  the end of the messages and of the trailer frame, never inside (as Envoy's filter does).
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ._grpc_frames import TRAILERS, frame, split_frames, trailer_block
from ._grpc_proto import Proto, json_from_message, struct_from_json

__all__ = ["BadRequest", "WebCodec", "codec_for"]

# content type -> (base64, framed, json)
_TYPES = {
    "application/grpc-web": (False, True, False),
    "application/grpc-web+proto": (False, True, False),
    "application/grpc-web-text": (True, True, False),
    "application/grpc-web-text+proto": (True, True, False),
    "application/grpc-web+json": (False, True, True),
    "application/grpc-web-text+json": (True, True, True),
    "application/json": (False, False, True),
}
_MAX_PENDING = 64 << 20  # an upstream frame announcing more than this is not buffered whole


class BadRequest(ValueError):
    """The client's request cannot be translated; the message is the 400's."""


def codec_for(content_type: str | None, path: str, proto: Proto | None) -> "WebCodec":
    """The codec for a request, or BadRequest (unknown type, JSON without proto, unknown method)."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    kind = _TYPES.get(mime)
    if kind is None:
        raise BadRequest(f"unsupported Content-Type {mime!r}: expected one of {', '.join(_TYPES)}")
    text, framed, as_json = kind
    method = None
    if as_json:
        if proto is None:
            raise BadRequest("transcoding requests require a .proto file defining the service")
        method = proto.methods.get(path)
        if method is None:
            raise BadRequest(f'Unknown path "{path}"')
    return WebCodec(mime, text, framed, method)


class WebCodec:
    """One request's translation state (the response side keeps partial frames and base64)."""

    def __init__(self, mime: str, text: bool, framed: bool, method: Any):
        self.mime = mime
        self.text = text
        self.framed = framed
        self.method = method  # set for JSON message encoding only
        self.pending = b""  # upstream bytes of an incomplete frame (JSON re-encoding)
        self.b64_rest = b""  # output bytes not yet base64-encoded (fewer than 3)

    # -- request ------------------------------------------------------------------------------
    def upstream(self, body: bytes) -> bytes:
        """The gRPC request body for the client's body; BadRequest when it is malformed."""
        if self.text:
            try:
                body = base64.b64decode(b"".join(body.split()), validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest("malformed gRPC-Web body: invalid base64") from None
        if not self.framed:
            return frame(0, self._encode(body))
        frames, rest = split_frames(body)
        if rest or any(flag not in (0, 1) for flag, _ in frames):
            raise BadRequest("malformed gRPC-Web body: incomplete or unknown message frame")
        if self.method is None:
            return body
        if any(flag for flag, _ in frames):
            raise BadRequest("compressed messages cannot be transcoded from JSON")
        return b"".join(frame(0, self._encode(payload)) for _, payload in frames)

    def _encode(self, text: bytes) -> bytes:
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise BadRequest(f"decode json err: {e}") from None
        try:
            return struct_from_json(doc, self.method.input)
        except ValueError:
            raise BadRequest("failed to encode payload") from None

    # -- response -----------------------------------------------------------------------------
    def downstream(self, chunk: bytes) -> bytes:
        """A chunk of the upstream's body as the client's (possibly empty while a frame is partial)."""
        if self.method is not None:
            chunk = self._json_frames(chunk)
        return self._text(chunk, False)

    def end(self, trailers: list[tuple[bytes, bytes]]) -> bytes:
        """The rest of the body, then (when framed) the trailer frame."""
        out = self._text(b"", True)
        if self.framed:
            block = frame(TRAILERS, trailer_block(trailers))
            out += base64.b64encode(block) if self.text else block
        return out

    def _json_frames(self, chunk: bytes) -> bytes:
        data = self.pending + chunk if self.pending else chunk
        frames, self.pending = split_frames(data)
        if len(self.pending) > _MAX_PENDING:
            self.pending = b""
            raise ValueError("upstream message too large to transcode")
        out = []
        for flag, payload in frames:
            msg = json.dumps(json_from_message(payload, self.method.output), separators=(",", ":")).encode()
            out.append(frame(flag, msg) if self.framed else msg)
        return b"".join(out)

    def _text(self, chunk: bytes, last: bool) -> bytes:
        if not self.text:
            return chunk
        data = self.b64_rest + chunk if self.b64_rest else chunk
        cut = len(data) if last else len(data) - len(data) % 3
        self.b64_rest = data[cut:]
        return base64.b64encode(data[:cut]) if cut else b""
