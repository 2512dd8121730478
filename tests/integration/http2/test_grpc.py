"""gRPC through the proxy with grpcio on both ends: every call kind, status and metadata intact."""
from __future__ import annotations

import queue
import threading
import time

import grpc
import pytest

from tests.integration.http2.h2_for_test import (
    GrpcOrigin, H2Worker, free_port_for_test, grpc_channel_for_test, method_for_test,
)
from tests.integration.proxy.proxy_for_test import (
    plugin_for_test, route_for_test, service_for_test, snapshot_for_test, target_for_test, upstream_for_test,
)

MB = 1024 * 1024
BIG = [("grpc.max_send_message_length", 16 * MB), ("grpc.max_receive_message_length", 16 * MB)]


@pytest.fixture(scope="module")
def origins():
    plain, tls = GrpcOrigin(options=BIG), GrpcOrigin(tls=True, options=BIG)
    yield {"grpc": plain, "grpcs": tls}
    plain.close()
    tls.close()


def _route(svc, header: str, **kw):
    return route_for_test(svc, paths=["/test.Echo/"], strip_path=False, protocols=["grpc", "grpcs"],
                          headers={"x-up": [header]}, **kw)


@pytest.fixture(scope="module")
def worker(origins, tmp_path_factory):
    plain = service_for_test(port=origins["grpc"].port, protocol="grpc")
    tls = service_for_test(port=origins["grpcs"].port, protocol="grpcs")
    dead = service_for_test(port=free_port_for_test(), protocol="grpc", retries=1)
    hasty = service_for_test(port=origins["grpc"].port, protocol="grpc", read_timeout=300)
    closed = _route(plain, "closed")
    snap = snapshot_for_test(services=[plain, tls, dead, hasty],
                             routes=[_route(plain, "grpc"), _route(tls, "grpcs"), _route(dead, "dead"),
                                     _route(hasty, "hasty"), closed],
                             plugins=[plugin_for_test("request-termination",
                                                      {"status_code": 403, "message": "no entry"}, route=closed)])
    w = H2Worker(snap, tmp_path_factory.mktemp("grpc"))
    yield w
    w.stop()


@pytest.fixture(params=["h2c", "tls"])
def channel(request, worker):
    cert = worker.cert if request.param == "tls" else None
    port = worker.tls if request.param == "tls" else worker.plain
    ch = grpc_channel_for_test(port, cert, BIG)
    yield ch
    ch.close()


UPSTREAMS = ["grpc", "grpcs"]


@pytest.mark.parametrize("up", UPSTREAMS)
def test_unary_with_initial_and_trailing_metadata(channel, origins, up):
    reply, call = method_for_test(channel, "Unary").with_call(b"hi", metadata=(("x-up", up), ("x-client", "c1")),
                                                              timeout=5)
    assert reply == b"echo:hi"
    assert ("x-initial", "yes") in [(m.key, m.value) for m in call.initial_metadata()]
    assert [(m.key, m.value) for m in call.trailing_metadata()] == [("x-trailer", "done")]
    assert call.code() == grpc.StatusCode.OK
    seen = origins[up].metadata[-1]
    assert seen["x-client"] == "c1"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["via"].startswith("1.1 meshway/")


@pytest.mark.parametrize("up", UPSTREAMS)
def test_server_streaming(channel, up):
    got = list(method_for_test(channel, "ServerStream", "unary_stream")(b"5", metadata=(("x-up", up),), timeout=5))
    assert got == [b"item-%d" % i for i in range(5)]


@pytest.mark.parametrize("up", UPSTREAMS)
def test_client_streaming(channel, up):
    reply = method_for_test(channel, "ClientStream", "stream_unary")(iter([b"a", b"bb", b"ccc", b""]),
                                                                     metadata=(("x-up", up),), timeout=5)
    assert reply == b"4:6"


@pytest.mark.parametrize("up", UPSTREAMS)
def test_bidi_streaming_is_interleaved(channel, up):
    outbox: queue.Queue = queue.Queue()

    def requests():
        while True:
            item = outbox.get()
            if item is None:
                return
            yield item

    replies = method_for_test(channel, "Bidi", "stream_stream")(requests(), metadata=(("x-up", up),), timeout=10)
    for i in range(3):  # each answer arrives before the next request is even sent
        outbox.put(b"m%d" % i)
        assert next(replies) == b"re:m%d" % i
    outbox.put(None)
    assert list(replies) == []


@pytest.mark.parametrize("up", UPSTREAMS)
def test_status_error_with_message_and_trailing_metadata(channel, up):
    with pytest.raises(grpc.RpcError) as err:
        method_for_test(channel, "Fail")(b"x", metadata=(("x-up", up),), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "bad thing happened: x"
    assert ("x-why", "because") in [(m.key, m.value) for m in err.value.trailing_metadata()]


@pytest.mark.parametrize("up", UPSTREAMS)
def test_ten_megabyte_messages_each_way(channel, up):
    payload = bytes(range(256)) * (10 * MB // 256)
    reply = method_for_test(channel, "Unary")(payload, metadata=(("x-up", up),), timeout=30)
    assert reply == b"echo:" + payload


def test_no_route_is_a_grpc_not_found(channel):
    with pytest.raises(grpc.RpcError) as err:
        method_for_test(channel, "Unary")(b"x", metadata=(("x-up", "nowhere"),), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "no Route matched with those values"


def test_unreachable_upstream_is_a_grpc_error_from_the_proxy(channel):
    with pytest.raises(grpc.RpcError) as err:
        method_for_test(channel, "Unary")(b"x", metadata=(("x-up", "dead"),), timeout=10)
    assert err.value.code() == grpc.StatusCode.INTERNAL  # Kong maps 502 (not in its table) to 13
    assert err.value.details() == "An invalid response was received from the upstream server"


def test_read_timeout_is_deadline_exceeded(channel):
    with pytest.raises(grpc.RpcError) as err:
        method_for_test(channel, "Slow")(b"1.0", metadata=(("x-up", "hasty"),), timeout=10)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert err.value.details() == "The upstream server is timing out"


def test_plugin_exit_becomes_a_grpc_status(channel):
    with pytest.raises(grpc.RpcError) as err:
        method_for_test(channel, "Unary")(b"x", metadata=(("x-up", "closed"),), timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == "no entry"


def test_calls_share_one_upstream_connection(worker, origins):
    origin = origins["grpc"]
    with grpc_channel_for_test(worker.plain) as ch:
        method_for_test(ch, "Unary")(b"warm", metadata=(("x-up", "grpc"),), timeout=5)
        before = set(origin.peers)
        threads = [threading.Thread(target=method_for_test(ch, "Slow"), args=(b"0.2",),
                                    kwargs={"metadata": (("x-up", "grpc"),), "timeout": 5}) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert origin.peers == before  # eight concurrent calls, no new upstream connection


@pytest.mark.slow
def test_full_upstream_connection_opens_another(tmp_path):
    origin = GrpcOrigin(options=[("grpc.max_concurrent_streams", 2)])
    svc = service_for_test(port=origin.port, protocol="grpc")
    w = H2Worker(snapshot_for_test(services=[svc], routes=[_route(svc, "grpc")]), tmp_path)
    try:
        with grpc_channel_for_test(w.plain) as ch:
            call = method_for_test(ch, "Slow")
            results: list = []
            threads = [threading.Thread(target=lambda: results.append(
                call(b"2", metadata=(("x-up", "grpc"),), timeout=30))) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert results == [b"slow"] * 6
        assert len(origin.peers) >= 3  # at most two streams per connection
        # and they ran side by side, not two at a time: counted at the origin, not by the wall clock
        assert origin.most_slow == 6
    finally:
        w.stop()
        origin.close()


def test_upstream_entity_balances_grpc_calls_over_its_targets(origins, tmp_path):
    second = GrpcOrigin()
    up = upstream_for_test("grpc.backend")
    svc = service_for_test(host="grpc.backend", port=80, protocol="grpc")
    targets = [target_for_test(up, f"127.0.0.1:{origins['grpc'].port}"), target_for_test(up, f"127.0.0.1:{second.port}")]
    w = H2Worker(snapshot_for_test(services=[svc], routes=[_route(svc, "lb")], upstreams=[up], targets=targets),
                 tmp_path)
    first_before = len(origins["grpc"].metadata)
    try:
        with grpc_channel_for_test(w.plain) as ch:
            replies = [method_for_test(ch, "Unary")(b"%d" % i, metadata=(("x-up", "lb"),), timeout=5)
                       for i in range(6)]
        assert replies == [b"echo:%d" % i for i in range(6)]
        assert len(origins["grpc"].metadata) - first_before == 3  # round-robin over two equal targets
        assert len(second.metadata) == 3
    finally:
        w.stop()
        second.close()


@pytest.mark.parametrize("up", UPSTREAMS)
def test_client_cancellation_reaches_the_upstream(channel, origins, up):
    origin = origins[up]
    before, seen = len(origin.cancelled_after), len(origin.metadata)
    future = method_for_test(channel, "Hang").future(b"", metadata=(("x-up", up),))  # no deadline: no grpc-timeout
    deadline = time.monotonic() + 30
    while len(origin.metadata) == seen:  # the call is at the upstream (a fixed 0.3 s could cancel it before)
        assert time.monotonic() < deadline, "the call never reached the upstream"
        time.sleep(0.01)
    future.cancel()
    deadline = time.monotonic() + 10
    while len(origin.cancelled_after) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(origin.cancelled_after) == before + 1
    assert origin.cancelled_after[-1] < 4.0  # the upstream call ended when the client gave up, not at 5 s
