"""Socket helpers on real sockets: listener options, original destination, proxy_bind."""
from __future__ import annotations

import asyncio
import os
import socket

import pytest

from meshway.proxy import netutil
from meshway.settings import load_settings, parse_listen


def spec_for_test(text: str):
    return parse_listen("stream_listen", text)[0]


def test_listener_gets_reuse_options_backlog_and_is_non_blocking():
    sock = netutil.prepare_listener_socket(spec_for_test("127.0.0.1:0 reuseport backlog=7"))
    with sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert sock.getblocking() is False
        assert sock.getsockopt(socket.SOL_IP, netutil.IP_TRANSPARENT) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="IP_TRANSPARENT needs CAP_NET_ADMIN")
def test_transparent_flag_sets_ip_transparent():
    with netutil.prepare_listener_socket(spec_for_test("127.0.0.1:0 transparent")) as sock:
        assert sock.getsockopt(socket.SOL_IP, netutil.IP_TRANSPARENT) == 1


def test_ipv6_listener_is_v6_only():
    with netutil.prepare_listener_socket(spec_for_test("[::1]:0")) as sock:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_a_busy_address_names_the_listener_in_the_error():
    with netutil.prepare_listener_socket(spec_for_test("127.0.0.1:0")) as first:
        port = first.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            netutil.prepare_listener_socket(spec_for_test(f"127.0.0.1:{port}"))


def test_original_destination_without_interception_is_the_local_address():
    with netutil.prepare_listener_socket(spec_for_test("127.0.0.1:0")) as listener:
        listener.setblocking(True)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert netutil.original_destination(accepted) == ("127.0.0.1", port)
                assert netutil.peer_address(accepted) == client.getsockname()


def test_mapped_ipv4_addresses_are_plain_ipv4():
    assert netutil.normalize_ip("::ffff:10.1.2.3") == "10.1.2.3"
    assert netutil.normalize_ip("fd00::1") == "fd00::1"


def test_proxy_bind_gives_the_upstream_source():
    assert netutil.upstream_source(load_settings(env={})) is None
    assert netutil.upstream_source(load_settings(env={}, overrides={"proxy_bind": "127.0.0.3"})) == ("127.0.0.3", 0)
    with pytest.raises(ValueError, match="proxy_bind"):
        netutil.upstream_source(load_settings(env={}, overrides={"proxy_bind": "not-an-ip"}))


def test_upstream_connections_leave_from_the_proxy_bind_address():
    async def scenario():
        seen = asyncio.get_running_loop().create_future()
        server = await asyncio.start_server(lambda r, w: seen.set_result(w.get_extra_info("peername")), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await netutil.connect_upstream(asyncio.get_running_loop(), asyncio.Protocol,
                                                      "localhost", port, ("127.0.0.7", 0))
        peer = await asyncio.wait_for(seen, 5)
        transport.close()
        server.close()
        return peer

    assert asyncio.run(scenario())[0] == "127.0.0.7"


def test_original_destination_of_an_ipv6_connection():
    with netutil.prepare_listener_socket(spec_for_test("[::1]:0")) as listener:
        listener.setblocking(True)
        port = listener.getsockname()[1]
        with socket.create_connection(("::1", port)):
            accepted, _ = listener.accept()
            with accepted:
                assert netutil.original_destination(accepted) == ("::1", port)
