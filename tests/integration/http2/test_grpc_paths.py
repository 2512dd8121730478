"""gRPC gets the path rules HTTP/1.1 and HTTP/2 get (issue 18): the route matches the normalised
`:path` and the HTTP/2 upstream receives that path, encoded."""
from __future__ import annotations

import grpc
import pytest

from tests.integration.http2.h2_for_test import GrpcOrigin, H2Worker, grpc_channel_for_test
from tests.integration.proxy.proxy_for_test import route_for_test, service_for_test, snapshot_for_test


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    origin = GrpcOrigin()
    svc = service_for_test(port=origin.port, protocol="grpc")
    route = route_for_test(svc, paths=["/test.Echo/"], strip_path=False, protocols=["grpc", "grpcs"])
    worker = H2Worker(snapshot_for_test(services=[svc], routes=[route]), tmp_path_factory.mktemp("grpcpaths"))
    ch = grpc_channel_for_test(worker.plain)
    yield ch
    ch.close()
    worker.stop()
    origin.close()


@pytest.mark.parametrize("method", ["/test.Echo/Un%61ry", "//test.Echo//Unary", "/test.Echo/x/../Unary",
                                    "/test.Echo/%2e/Unary"])
def test_a_normalised_path_reaches_the_grpc_method(channel, method):
    assert channel.unary_unary(method)(b"hi", timeout=5) == b"echo:hi"


def test_encoded_line_breaks_reach_the_grpc_origin_encoded(channel):
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/test.Echo/Unary%0d%0aX:%20y")(b"hi", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # the origin parsed a method name it lacks


def test_an_encoded_slash_is_not_a_slash(channel):
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/test.Echo%2FUnary")(b"hi", timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # the proxy's 404: /test.Echo/ is no prefix of it
    assert "no Route matched" in err.value.details()
