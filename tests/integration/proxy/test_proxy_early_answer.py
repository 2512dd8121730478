"""Upstreams that answer before the request and close without Content-Length (ncat --sh-exec).

The service-mesh walkthrough's Service B answers as soon as it accepts, then closes. When the
worker saw that close before binding the new connection to the exchange, writing the request
raised under uvloop and the client waited forever. Each test here forces its interleaving.
"""
from __future__ import annotations

import http.client
import socket
import time

import pytest

from tests.integration.proxy.early_answer_for_test import (
    ANSWER_FIRST, KEEP_ALIVE_OK, RawOriginForTest, WorkerInProcessForTest, hold_connect_until_closed_for_test,
    read_head_for_test,
)
from tests.integration.proxy.proxy_for_test import route_for_test, service_for_test, snapshot_for_test

HELLO = b"Hello from Service B\n"


@pytest.fixture
def proxy_to(tmp_path):
    started: list = []

    def start(script) -> tuple[WorkerInProcessForTest, RawOriginForTest]:
        origin = RawOriginForTest(script)
        svc = service_for_test(port=origin.port, retries=0)
        proxy = WorkerInProcessForTest(snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"])]),
                                       tmp_path)
        started.append((proxy, origin))
        return proxy, origin

    yield start
    for proxy, origin in started:
        proxy.stop()
        origin.close()


def _get(client: http.client.HTTPConnection) -> tuple[int, bytes, str | None]:
    client.request("GET", "/", headers={"Host": "service-b"})
    resp = client.getresponse()
    return resp.status, resp.read(), resp.getheader("Transfer-Encoding")


def _answer_first_and_close(conn: socket.socket, n: int) -> None:
    conn.sendall(ANSWER_FIRST)


def test_an_answer_and_close_seen_before_the_request_is_written_reach_the_client(proxy_to):
    proxy, origin = proxy_to(_answer_first_and_close)
    hold_connect_until_closed_for_test(proxy.worker)
    client = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    assert _get(client) == (200, HELLO, "chunked")  # close-delimited upstream body: chunked downstream
    assert _get(client) == (200, HELLO, "chunked")  # the client connection stayed usable
    assert origin.accepted == 2 and proxy.idle_upstream_connections() == 0


def test_an_answer_before_the_request_then_a_close_on_a_fresh_connection(proxy_to):
    def answer_read_close(conn: socket.socket, n: int) -> None:
        conn.sendall(ANSWER_FIRST)
        read_head_for_test(conn)

    proxy, origin = proxy_to(answer_read_close)
    client = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    for _ in range(3):
        assert _get(client) == (200, HELLO, "chunked")
    assert origin.accepted == 3 and proxy.idle_upstream_connections() == 0  # never pooled


def test_an_answer_then_close_without_length_on_a_pooled_connection(proxy_to):
    def keep_alive_then_close_delimited(conn: socket.socket, n: int) -> None:
        read_head_for_test(conn)
        conn.sendall(KEEP_ALIVE_OK)
        read_head_for_test(conn)
        conn.sendall(ANSWER_FIRST)

    proxy, origin = proxy_to(keep_alive_then_close_delimited)
    client = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    assert _get(client) == (200, b"ok", None)
    assert proxy.idle_upstream_connections() == 1
    assert _get(client) == (200, HELLO, "chunked")
    assert origin.accepted == 1 and proxy.idle_upstream_connections() == 0


def test_an_answer_on_an_idle_pooled_connection_is_not_taken_for_the_next_request(proxy_to):
    def keep_alive_then_unsolicited(conn: socket.socket, n: int) -> None:
        read_head_for_test(conn)
        conn.sendall(KEEP_ALIVE_OK)
        if n == 1:  # while the connection idles in the pool: an answer to nothing, then the close
            conn.sendall(ANSWER_FIRST)

    proxy, origin = proxy_to(keep_alive_then_unsolicited)
    client = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    assert _get(client) == (200, b"ok", None)
    for _ in range(500):  # until the worker dropped the idle connection (bounded)
        if proxy.idle_upstream_connections() == 0:
            break
        time.sleep(0.01)
    assert proxy.idle_upstream_connections() == 0
    assert _get(client) == (200, b"ok", None)
    assert origin.accepted == 2
