"""grpc-gateway: REST/JSON requests to a gRPC service through `google.api.http` rules, as Kong's plugin.

The request's method and path pick a rule of `config.proto` (`_grpc_gateway_rules`); its bound
variables, JSON body or query parameters become the request message, sent as a unary gRPC call
(`POST /<package.Service>/<Method>`, `application/grpc`, `TE: trailers`, no query string). The
answer's messages come back as JSON with the proto's field names and every field (Kong's shape);
a `grpc-status` in the answer's headers (gRPC's trailers-only errors) sets the HTTP status by
Kong's table, and is passed on with `grpc-message`. `OPTIONS` gets Kong's CORS answer. No rule,
bad JSON or a payload that does not fit the message is a 400 that never reaches the service.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from pydantic import field_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS

from ._grpc_frames import frame, split_frames
from ._grpc_gateway_rules import GatewayError, compile_rules, match, payload_for
from ._grpc_proto import json_from_message, load_proto, struct_from_json
from .grpc_web import checked_proto

_STATE = "grpc-gateway"  # the matched method's output class and the undecoded bytes, in ctx.shared
_NO_PROTO = "transcoding requests require a .proto file defining the service"
_PREFLIGHT = {"Content-Type": "application/json", "Access-Control-Allow-Origin": "*",
              "Access-Control-Allow-Methods": "GET,POST,PATCH,DELETE", "Access-Control-Allow-Headers": "content-type"}
# google/rpc/code.proto -> HTTP, Kong's table; a status not in it is a 500.
GRPC_TO_HTTP = {0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400,
                12: 500, 13: 500, 14: 503, 15: 500, 16: 401}


class GrpcGatewayConfig(PluginConfig):
    """Kong's grpc-gateway schema: the proto file only."""

    proto: str | None = None

    @field_validator("proto")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return checked_proto(value)


class _Answer:
    """One request's response side: the output message class and a partial frame."""

    __slots__ = ("output", "pending")

    def __init__(self, output: Any):
        self.output = output
        self.pending = b""


class GrpcGateway(Plugin):
    """Maps REST requests to gRPC calls and the answers to JSON."""

    name = "grpc-gateway"
    priority = 998
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    Config = GrpcGatewayConfig
    buffers_request = True

    def __init__(self, config: GrpcGatewayConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.bindings = compile_rules(load_proto(config.proto)) if config.proto else None

    def access(self, ctx: RequestContext) -> None:
        ctx.set_response_header("Access-Control-Allow-Origin", "*")
        if ctx.method == "OPTIONS":
            ctx.exit(200, "OK", _PREFLIGHT)
            return
        if self.bindings is None:
            ctx.exit(400, _NO_PROTO)
            return
        try:
            binding, values = match(self.bindings, ctx.method, ctx.path)
            payload = payload_for(binding, values, ctx.read_body() or b"", ctx.query)
        except GatewayError as e:
            ctx.exit(400, str(e))  # Kong answers its error text as the body
            return
        try:
            message = struct_from_json(payload, binding.method.input)
        except ValueError:
            ctx.exit(400, "failed to encode payload")
            return
        ctx.shared[_STATE] = _Answer(binding.method.output)
        ctx.set_header("Content-Type", "application/grpc")
        ctx.set_header("TE", "trailers")
        ctx.set_body(frame(0, message))
        ctx.set_path(binding.method.path)
        ctx.set_query("")
        ctx.set_method("POST")

    def response(self, ctx: RequestContext) -> None:
        if ctx.method == "OPTIONS" or _STATE not in ctx.shared:
            return
        ctx.set_response_header("Content-Type", "application/json")
        code = ctx.get_response_header("grpc-status")
        if code is not None:
            ctx.response_status = GRPC_TO_HTTP.get(int(code) if code.isdigit() else -1, 500)

    def body(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes | None:
        answer = ctx.shared.get(_STATE)
        if answer is None:
            return None
        frames, answer.pending = split_frames(answer.pending + chunk if answer.pending else chunk)
        out = b"".join(_json(payload, answer.output) for flag, payload in frames if flag == 0)
        if eof and not out and answer.pending:
            return answer.pending  # not frames: what came, as Kong passes an undecodable body on
        return out


def _json(payload: bytes, output: Any) -> bytes:
    return json.dumps(json_from_message(payload, output), separators=(",", ":")).encode()


PLUGIN = GrpcGateway
