"""A data plane's view of the mesh (pure) and its DNS proxy (real UDP/TCP sockets on loopback)."""
from __future__ import annotations

import asyncio
import struct

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from meshway.mesh import compile_mesh
from meshway.mesh._dns import DnsProxy
from meshway.mesh._translate import dataplane_snapshot, registered
from meshway.proxy import compile_runtime
from meshway.proxy.stream import compile_stream_runtime
from meshway.settings import load_settings

SETTINGS = load_settings(env={}, overrides={"stream_listen": "127.0.0.1:15001"})


def dp(name: str, address: str, *inbounds: tuple[int, str, str], tp: bool = True, **net) -> dict:
    networking = {"address": address, **net,
                  "inbound": [{"port": p, "tags": {"kuma.io/service": s, "kuma.io/protocol": proto}} for p, s, proto in inbounds]}
    if tp:
        networking["transparentProxying"] = {"redirectPortInbound": 15006, "redirectPortOutbound": 15001}
    return {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}


def snapshot(*dataplanes: dict, vips: dict | None = None, meshes: list | None = None) -> dict:
    return {"mesh_resources": {"meshes": meshes or [{"type": "Mesh", "name": "default"}],
                               "dataplanes": list(dataplanes), "vips": {"default": vips or {}}}}


WEB = dp("web-1", "10.0.0.3", (8080, "web", "http"), (19000, "greeter", "tcp"))
WEB2 = dp("web-2", "10.0.0.4", (8080, "web", "http"))
CLIENT = dp("client", "10.0.0.2", (8080, "demo-client", "tcp"))


def routes_by_name(view: dict) -> dict[str, dict]:
    return {r["name"]: r for r in view["routes"]}


def test_own_inbounds_others_vips_and_passthrough():
    view = dataplane_snapshot(snapshot(WEB, WEB2, CLIENT, vips={"web": "240.0.0.1", "greeter": "240.0.0.2"}),
                              "default", "client")
    routes = routes_by_name(view)
    assert routes["inbound-0"]["destinations"] == [{"ip": "10.0.0.2", "port": 8080}]
    assert {"outbound-10.0.0.3-8080", "outbound-10.0.0.4-8080", "outbound-10.0.0.3-19000", "vip-web",
            "vip-greeter", "passthrough"} <= set(routes)
    targets = sorted(t["target"] for t in view["targets"])
    assert targets == ["10.0.0.3:19000", "10.0.0.3:8080", "10.0.0.4:8080"]  # web's VIP balances over both
    mesh = compile_mesh(view, SETTINGS)
    assert mesh.fronts("10.0.0.2", 8080) and not mesh.fronts("10.0.0.3", 8080)
    # hops to the other data planes are mesh hops (upgraded once the node certificate is there)
    assert mesh.remote.contains("10.0.0.3", 8080) and mesh.remote.contains("10.0.0.4", 8080)
    assert not mesh.remote.contains("10.9.9.9", 80) and not mesh.remote.contains("10.0.0.2", 8080)
    assert mesh.source_for("10.0.0.2", 8080) == ("127.0.0.6", 0) and mesh.source_for("10.0.0.3", 8080) is None
    assert mesh.speaks_http("240.0.0.1", 80) and mesh.speaks_http("10.0.0.3", 8080)
    assert not mesh.speaks_http("10.0.0.3", 19000) and not mesh.speaks_http("240.0.0.2", 80)
    # the compiled runtimes: HTTP routes on the original destination, stream routes by destination
    http = compile_runtime(view, SETTINGS).router
    assert http.match("GET", "whatever.example", "/x", default_port=80, dst=("240.0.0.1", 80)).route["name"] == "vip-web-http"
    assert http.match("GET", "whatever.example", "/x", default_port=80, dst=("10.9.9.9", 80)) is None
    stream = compile_stream_runtime(view, SETTINGS)
    assert stream.router is not None and registered(view, "default", "client")


def test_passthrough_follows_the_mesh_and_an_unregistered_data_plane_fronts_nothing():
    closed = [{"type": "Mesh", "name": "default", "networking": {"outbound": {"passthrough": False}}}]
    view = dataplane_snapshot(snapshot(WEB, meshes=closed), "default", "client")
    assert "passthrough" not in routes_by_name(view)
    assert not registered(view, "default", "client")
    assert not compile_mesh(view, SETTINGS).fronts("10.0.0.2", 8080)


def test_without_transparent_proxying_outbounds_listen_on_their_own_address():
    plain = dp("client", "10.0.0.2", (8080, "demo-client", "tcp"), tp=False,
               outbound=[{"port": 10001, "tags": {"kuma.io/service": "web"}}])
    view = dataplane_snapshot(snapshot(WEB, plain), "default", "client")
    route = routes_by_name(view)["outbound-0"]
    assert route["destinations"] == [{"ip": "127.0.0.1", "port": 10001}]
    assert compile_mesh(view, SETTINGS).source_for("10.0.0.2", 8080) is None  # no rules, no 127.0.0.6


def test_a_not_ready_inbound_gets_no_traffic():
    sick = dp("web-2", "10.0.0.4", (8080, "web", "http"))
    sick["networking"]["inbound"][0]["health"] = {"ready": False}
    view = dataplane_snapshot(snapshot(WEB, sick, CLIENT, vips={"web": "240.0.0.1"}), "default", "client")
    assert "10.0.0.4:8080" not in [t["target"] for t in view["targets"]]


# ---- DNS proxy ----------------------------------------------------------------------------------------
class Upstream(asyncio.DatagramProtocol):
    """A real resolver on loopback: `outside.test` A 10.1.2.3, everything else NXDOMAIN."""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(answer(data), addr)


def answer(data: bytes) -> bytes:
    query = DNSRecord.parse(data)
    reply = query.reply()
    reply.header.aa = 0
    if str(query.q.qname) == "outside.test.":
        reply.add_answer(RR("outside.test.", QTYPE.A, rdata=A("10.1.2.3"), ttl=30))
    else:
        reply.header.rcode = RCODE.NXDOMAIN
    return reply.pack()


async def tcp_upstream(reader, writer) -> None:
    size = struct.unpack("!H", await reader.readexactly(2))[0]
    out = answer(await reader.readexactly(size))
    writer.write(struct.pack("!H", len(out)) + out)
    await writer.drain()
    writer.close()


def free_port() -> int:
    from tests.helpers.node import free_port as _helpers_free_port

    return _helpers_free_port("127.0.0.1")


async def ask_udp(port: int, name: str, qtype: str = "A") -> DNSRecord:
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            done.set_result(DNSRecord.parse(data))

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    transport.sendto(DNSRecord.question(name, qtype).pack())
    try:
        return await asyncio.wait_for(done, 5)
    finally:
        transport.close()


async def ask_tcp(port: int, name: str) -> DNSRecord:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = DNSRecord.question(name).pack()
    writer.write(struct.pack("!H", len(data)) + data)
    size = struct.unpack("!H", await reader.readexactly(2))[0]
    reply = DNSRecord.parse(await reader.readexactly(size))
    writer.close()
    return reply


def test_dns_proxy_answers_mesh_names_and_forwards_the_rest_over_udp_and_tcp(monkeypatch):
    import meshway.mesh._dns as dns

    monkeypatch.setattr(dns, "FORWARD_TIMEOUT", 1.0)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        up_port = free_port()
        udp, _ = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", up_port))
        tcp = await asyncio.start_server(tcp_upstream, "127.0.0.1", up_port)
        proxy = DnsProxy("127.0.0.1", free_port(), ("127.0.0.1", up_port))
        await proxy.start()
        proxy.set_table({"web.mesh": "240.0.0.1", "echo.example.svc.1010.mesh": "240.0.0.2"})
        try:
            mesh = await ask_udp(proxy.port, "Web.Mesh")
            assert [str(r.rdata) for r in mesh.rr] == ["240.0.0.1"] and mesh.header.aa == 1 and mesh.rr[0].ttl == 60
            assert [str(r.rdata) for r in (await ask_tcp(proxy.port, "web.mesh")).rr] == ["240.0.0.1"]
            six = await ask_udp(proxy.port, "web.mesh", "AAAA")
            assert six.header.rcode == RCODE.NOERROR and six.rr == []  # the VIPs are IPv4
            outside = await ask_udp(proxy.port, "outside.test")
            assert [str(r.rdata) for r in outside.rr] == ["10.1.2.3"] and outside.header.aa == 0  # relayed as is
            assert (await ask_udp(proxy.port, "nowhere.test")).header.rcode == RCODE.NXDOMAIN
            assert (await ask_tcp(proxy.port, "nowhere.test")).header.rcode == RCODE.NXDOMAIN
            assert (await ask_tcp(proxy.port, "outside.test")).rr[0].rdata == A("10.1.2.3")
            udp.close()  # the upstream goes silent: SERVFAIL, not a hang
            proxy.upstream = ("127.0.0.1", free_port())
            assert (await ask_udp(proxy.port, "outside.test")).header.rcode == RCODE.SERVFAIL
        finally:
            await proxy.stop()
            tcp.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))
