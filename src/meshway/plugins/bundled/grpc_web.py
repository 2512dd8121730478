"""grpc-web: browser gRPC-Web clients (HTTP/1.1 or HTTP/2) to a gRPC service, as Kong's plugin.

The request body is decoded (base64 for `-text`, JSON to protobuf with `proto` for `+json`) and
sent to the service as `application/grpc` with `TE: trailers`; the answer goes back in the
client's content type with the service's trailers as gRPC-Web's last frame (flag 0x80) in the
body. `OPTIONS` is answered here (CORS preflight). Without `pass_stripped_path` the service
gets the client's path, as Kong's `grpc_pass` sends it; with it, the path the route computed.
A malformed body, an unknown content type or method is a 400; nothing reaches the service.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import field_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS

from ._grpc_proto import ProtoError, load_proto
from ._grpc_web_codec import BadRequest, codec_for

_STATE = "grpc-web"  # this plugin's per-request codec, in ctx.shared


class GrpcWebConfig(PluginConfig):
    """Kong's grpc-web schema."""

    proto: str | None = None
    pass_stripped_path: bool | None = None
    allow_origin_header: str = "*"

    @field_validator("proto")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return checked_proto(value)


def checked_proto(value: str | None) -> str | None:
    """A `proto` setting that names a file protoc compiles (so a bad one is a 400 at creation)."""
    if value is not None:
        try:
            load_proto(value)
        except ProtoError as e:
            raise ValueError(str(e)) from None
    return value


class GrpcWeb(Plugin):
    """Translates gRPC-Web requests to gRPC and the answers back."""

    name = "grpc-web"
    priority = 3
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    Config = GrpcWebConfig
    buffers_request = True

    def __init__(self, config: GrpcWebConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.proto = load_proto(config.proto) if config.proto else None
        origin = config.allow_origin_header
        self.preflight = {"Content-Type": "application/grpc-web-text+proto", "Access-Control-Allow-Origin": origin,
                          "Access-Control-Allow-Methods": "POST",
                          "Access-Control-Allow-Headers": "content-type,x-grpc-web,x-user-agent"}

    def access(self, ctx: RequestContext) -> None:
        ctx.set_response_header("Access-Control-Allow-Origin", self.config.allow_origin_header)
        if ctx.method == "OPTIONS":
            ctx.exit(200, b"OK", self.preflight)
            return
        try:
            codec = codec_for(ctx.get_header("Content-Type"), self._method_path(ctx.path), self.proto)
            body = codec.upstream(ctx.read_body() or b"")
        except BadRequest as e:
            ctx.exit(400, str(e))  # Kong answers its error text as the body
            return
        ctx.shared[_STATE] = codec
        if not self.config.pass_stripped_path:
            ctx.set_path(ctx.path)
        ctx.set_header("Content-Type", "application/grpc")
        ctx.set_header("TE", "trailers")
        ctx.set_body(body)

    def _method_path(self, path: str) -> str:
        if not self.config.pass_stripped_path:
            return path
        # The service gets the stripped path, which ends with /<package.Service>/<Method>.
        parts = path.rsplit("/", 2)
        return "/" + "/".join(parts[-2:]) if len(parts) == 3 else path

    def response(self, ctx: RequestContext) -> None:
        codec = ctx.shared.get(_STATE)
        if codec is not None:
            ctx.set_response_header("Content-Type", codec.mime)

    def body(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes | None:
        codec = ctx.shared.get(_STATE)
        if codec is None or ctx.method != "POST":
            return None
        out = codec.downstream(chunk) if chunk else b""
        if eof:
            out += codec.end(_trailers(ctx))
            ctx.response_trailers = None  # they are in the body now
        return out


def _trailers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    """The service's trailers; for a trailers-only answer, its grpc-status and grpc-message."""
    if ctx.response_trailers:
        return list(ctx.response_trailers)
    status = ctx.get_response_header("grpc-status") or "0"
    message = ctx.get_response_header("grpc-message") or ""
    return [(b"grpc-status", status.encode("latin-1")), (b"grpc-message", message.encode("latin-1"))]


PLUGIN = GrpcWeb
