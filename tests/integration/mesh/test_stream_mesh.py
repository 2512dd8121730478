"""Two in-process stream sidecars with real mutual TLS between them: upgrade, termination, refusals."""
from __future__ import annotations

import socket
import ssl

import pytest

from meshway.mesh import MESH_ALPN, MESH_SNI, MeshCA, NodeIdentity, worker_snapshot
from tests.integration.stream.stream_for_test import route_for_test, service_for_test, snapshot_for_test

OUTSIDER = "127.0.0.9"  # a loopback source that no sidecar fronts


def identity_for_test(tmp_path, ca: MeshCA, node: str) -> dict:
    ident = NodeIdentity(tmp_path / node, node)
    return {**ident.install(ca.sign(ident.csr(), node, node), ca.cert_pem).as_dict(), "node_id": node}


def sidecar_snapshot_for_test(target_port: int, identity: dict, endpoints=()) -> dict:
    snap = snapshot_for_test([service_for_test("svc", target_port)], [route_for_test("r", "svc")])
    if endpoints:
        snap["mesh"] = {"endpoints": list(endpoints)}
    return worker_snapshot(snap, "h", identity)[0]


def talk_for_test(port: int, data: bytes, source: str = "127.0.0.1", wrap=None) -> bytes:
    raw = socket.create_connection(("127.0.0.1", port), timeout=3, source_address=(source, 0))
    conn = wrap(raw) if wrap else raw
    try:
        conn.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = conn.recv(4096)
            if not chunk:
                break
            got += chunk
        return got
    except (ssl.SSLError, ConnectionError):
        return b""
    finally:
        conn.close()


@pytest.fixture
def mesh_ca(tmp_path):
    return MeshCA.load_or_create(tmp_path / "cp")


def _receiver(proxy_factory, tmp_path, mesh_ca, echo, mode="permissive"):
    ident = identity_for_test(tmp_path, mesh_ca, "node-b")
    return proxy_factory(sidecar_snapshot_for_test(echo.port, ident), mesh_mtls=mode, mesh_inbound="127.0.0.1",
                         prefix=str(tmp_path / "node-b"))


def test_the_hop_between_two_sidecars_is_mutual_tls_and_the_service_sees_plain_bytes(
        proxy_factory, tmp_path, mesh_ca, echo):
    b = _receiver(proxy_factory, tmp_path, mesh_ca, echo)
    endpoints = [{"node_id": "node-b", "inbound": [f"127.0.0.1:{b.port}"]}]
    a = proxy_factory(sidecar_snapshot_for_test(b.port, identity_for_test(tmp_path, mesh_ca, "node-a"), endpoints),
                      prefix=str(tmp_path / "node-a"))
    assert talk_for_test(a.port, b"ping through the mesh") == b"ping through the mesh"
    a_line = a.wait_line(f"dst=127.0.0.1:{a.port} ")  # both proxies log on meshway.stream
    b_line = b.wait_line(f"dst=127.0.0.1:{b.port} ")
    assert "peer=spiffe://meshway/node/node-b" in a_line and "upstream_tls=yes" in a_line
    assert "peer=spiffe://meshway/node/node-a" in b_line and f"sni={MESH_SNI}" in b_line
    assert "upstream_tls=no" in b_line and "up_bytes=21" in b_line


def test_strict_mode_refuses_plain_clients_and_permissive_mode_takes_them(proxy_factory, tmp_path, mesh_ca, echo):
    strict = _receiver(proxy_factory, tmp_path, mesh_ca, echo, mode="strict")
    assert talk_for_test(strict.port, b"hello", source=OUTSIDER) == b""
    assert f"dst=127.0.0.1:{strict.port} " in strict.wait_line("close=mesh_refused")
    permissive = _receiver(proxy_factory, tmp_path, mesh_ca, echo)
    assert talk_for_test(permissive.port, b"hello", source=OUTSIDER) == b"hello"
    assert "mtls=no peer=-" in permissive.wait_line(f"dst=127.0.0.1:{permissive.port} ")


def _mesh_client(cert: str, key: str, ca: str | None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols([MESH_ALPN])
    return lambda raw: ctx.wrap_socket(raw, server_hostname=MESH_SNI)


def test_a_certificate_from_another_ca_is_refused(proxy_factory, tmp_path, mesh_ca, echo):
    b = _receiver(proxy_factory, tmp_path, mesh_ca, echo)
    stranger = identity_for_test(tmp_path, MeshCA.load_or_create(tmp_path / "other-cp"), "node-x")
    wrap = _mesh_client(stranger["cert_path"], stranger["key_path"], None)
    assert talk_for_test(b.port, b"let me in", source=OUTSIDER, wrap=wrap) == b""
    line = b.wait_line("close=mesh_refused")
    assert "up_bytes=0" in line and "upstream=-" in line  # the service was never dialled
    member = identity_for_test(tmp_path, mesh_ca, "node-m")
    wrap = _mesh_client(member["cert_path"], member["key_path"], None)
    assert talk_for_test(b.port, b"member here", source=OUTSIDER, wrap=wrap) == b"member here"
