"""Every TLS listener a node opens, not only the proxy's, follows meshway's TLS policy: TLS 1.2
clients offering only CBC suites are refused, an AEAD suite is chosen otherwise."""
from __future__ import annotations

import socket
import ssl
import threading

import pytest

from meshway.mesh._ca import MeshCA
from meshway.mesh._runtime import client_context, server_context
from tests.helpers.node import NodeForTest, free_port, run_cli_for_test
from tests.helpers.tls_policy import assert_aead_only_for_test


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    """A real control plane: Admin API `ssl` listener, hybrid cluster listener, `dp run` listener."""
    tmp = tmp_path_factory.mktemp("tlspolicy")
    cert = (str(tmp / "cluster.crt"), str(tmp / "cluster.key"))
    assert run_cli_for_test("hybrid", "gen-cert", *cert).returncode == 0
    ports = {name: free_port() for name in ("admin", "admin_ssl", "cluster", "dp")}
    node = NodeForTest(tmp, "cp", dict(role="control_plane", proxy_listen="off",
                admin_listen=f"127.0.0.1:{ports['admin']}, 127.0.0.1:{ports['admin_ssl']} ssl",
                cluster_listen=f"127.0.0.1:{ports['cluster']}", cluster_cert=cert[0], cluster_cert_key=cert[1],
                mesh_dp_listen=f"127.0.0.1:{ports['dp']}"))
    node.start()
    yield ports, cert
    node.stop()


def test_admin_api_ssl_listener(control_plane):
    ports, _ = control_plane
    assert_aead_only_for_test(ports["admin_ssl"])


def test_hybrid_cluster_listener(control_plane):
    ports, (crt, key) = control_plane  # mutual TLS: the data planes' shared certificate
    assert_aead_only_for_test(ports["cluster"], "-cert", crt, "-key", key)


def test_dataplane_server_listener(control_plane):
    ports, _ = control_plane
    assert_aead_only_for_test(ports["dp"])


@pytest.fixture
def mesh_identity(tmp_path):
    ca = MeshCA.load_or_create(tmp_path)
    crt, key = ca.control_plane_pair(tmp_path)  # any leaf the mesh CA issued
    return {"cert_path": crt, "key_path": key, "ca_path": str(tmp_path / "ca.crt")}


def test_mesh_hop_server_context(mesh_identity):
    """The context sidecars terminate mesh hops with, served on a real socket."""
    ctx = server_context(mesh_identity)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert_aead_only_for_test(port, "-cert", mesh_identity["cert_path"], "-key", mesh_identity["key_path"])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_mesh_hop_client_context_offers_no_cbc(mesh_identity):
    """Sidecar to sidecar both ends are meshway: the dialling side offers AEAD suites only."""
    offered = [c["name"] for c in client_context(mesh_identity).get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert offered and all("GCM" in name or "CHACHA20" in name for name in offered), offered
