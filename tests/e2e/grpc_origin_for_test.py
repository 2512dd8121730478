"""A real grpcio server for the grpc-web and grpc-gateway tests, serving tests/data/grpc/greeter.proto.

Its message classes come from protoc's own Python output (`--python_out`), generated into a
temporary directory, so the test side shares no code with the plugins it checks.
"""
from __future__ import annotations

import importlib
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

PROTO = Path(__file__).resolve().parent.parent / "data" / "grpc" / "greeter.proto"


def greeter_pb2_for_test(out: Path) -> Any:
    """protoc's Python module for greeter.proto, generated into `out`."""
    import google.api
    import grpc_tools

    googleapis = Path(list(google.api.__path__)[0]).parent.parent
    wkt = Path(grpc_tools.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO.parent}", f"-I{wkt}", f"-I{googleapis}",
                    f"--python_out={out}", str(PROTO)], check=True)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module("greeter_pb2")


class GreeterOrigin:
    """meshtest.Greeter on 127.0.0.1 (h2c), recording the metadata and paths of what it served."""

    def __init__(self, pb2: Any):
        self.pb2 = pb2
        self.seen: list[dict[str, str]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("meshtest.Greeter", self._methods()),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _seen(self, context: Any) -> None:
        self.seen.append(dict(context.invocation_metadata()))

    def _methods(self) -> dict[str, grpc.RpcMethodHandler]:
        pb2 = self.pb2

        def say_hello(req: Any, context: Any) -> Any:
            self._seen(context)
            context.set_trailing_metadata((("x-served-by", "greeter"),))
            return pb2.HelloReply(reply=f"hello {req.name}", boolean_test=req.boolean_test)

        def echo(req: Any, context: Any) -> Any:
            self._seen(context)
            return req

        def fail(req: Any, context: Any) -> Any:
            self._seen(context)
            context.abort(grpc.StatusCode.NOT_FOUND, f"no such name: {req.name}")

        def count(req: Any, context: Any):
            self._seen(context)
            for i in range(req.times or 3):
                yield pb2.HelloReply(reply=f"{req.name} {i}")

        def update_user(req: Any, context: Any) -> Any:
            self._seen(context)
            return req

        def grow(req: Any, context: Any) -> Any:
            self._seen(context)
            req.tail.count += 1
            return req

        def unary(fn: Any, cls: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=cls.FromString,
                                                       response_serializer=lambda m: m.SerializeToString())

        return {
            "SayHello": unary(say_hello, pb2.HelloRequest),
            "Echo": unary(echo, pb2.EchoMessage),
            "Fail": unary(fail, pb2.HelloRequest),
            "Count": grpc.unary_stream_rpc_method_handler(count, request_deserializer=pb2.HelloRequest.FromString,
                                                          response_serializer=lambda m: m.SerializeToString()),
            "UpdateUser": unary(update_user, pb2.UpdateRequest),
            "Grow": unary(grow, pb2.Creature),
        }

    def close(self) -> None:
        self.server.stop(0)
