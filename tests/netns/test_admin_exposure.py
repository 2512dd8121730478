"""An Admin API bound beyond loopback, inside a namespace with a non-loopback address: with
credentials any Host is accepted there, without them (admin_listen_insecure) only its names."""
from __future__ import annotations

import pytest

from tests.fixtures.certs import cert_pair_for_test, signed_pair_for_test
from tests.helpers.node import MESHWAY, free_port, node_factory  # noqa: F401  (fixture)
from tests.integration.admin.test_admin_access import curl_for_test

ADDRESS = "10.99.0.1"


@pytest.fixture
def lan(netns):
    """The namespace with an interface holding ADDRESS, the host's "LAN" address (a veth pair:
    the kernel here has no dummy interfaces; both ends stay inside the namespace)."""
    netns.run("ip", "link", "add", "adm0", "type", "veth", "peer", "name", "adm1")
    netns.run("ip", "addr", "add", f"{ADDRESS}/24", "dev", "adm0")
    netns.run("ip", "link", "set", "adm0", "up")
    netns.run("ip", "link", "set", "adm1", "up")
    return netns


def _start_inside(lan, node) -> None:
    result = lan.run(MESHWAY, "start", "-p", str(node.prefix), "-c", str(node.conf), timeout=60, check=False)
    node.started = result.returncode == 0
    assert node.started, result.stderr.decode() + node.error_log()


def test_with_tokens_any_host_is_accepted_from_the_network(lan, node_factory):
    port = free_port()
    node = node_factory("exposed", admin_listen=f"0.0.0.0:{port}", admin_auth="token")
    token = node.cli("admin", "token", "create", "remote").stdout.strip()
    _start_inside(lan, node)
    inside = tuple(lan.argv())
    remote = f"http://{ADDRESS}:{port}/services"
    assert curl_for_test(remote, "-H", "Host: cp.example.com", inside=inside)[0] == 401
    assert curl_for_test(remote, "-H", "Host: cp.example.com", "-H", f"Kong-Admin-Token: {token}", inside=inside)[0] == 200
    # a loopback connection is still checked: a rebinding page on this host carries no token, but the
    # Host check does not depend on that
    local = f"http://127.0.0.1:{port}/services"
    assert curl_for_test(local, "-H", "Host: cp.example.com", "-H", f"Kong-Admin-Token: {token}", inside=inside)[0] == 421
    assert curl_for_test(local, "-H", f"Kong-Admin-Token: {token}", inside=inside)[0] == 200


def test_insecure_override_still_checks_host(lan, node_factory):
    port = free_port()
    node = node_factory("insecure", admin_listen=f"0.0.0.0:{port}", admin_listen_insecure="on",
                        admin_server_names="cp.internal")
    _start_inside(lan, node)
    inside = tuple(lan.argv())
    url = f"http://{ADDRESS}:{port}/services"
    assert curl_for_test(url, inside=inside)[0] == 200  # Host: 10.99.0.1:port, the address it was reached on
    assert curl_for_test(url, "-H", "Host: cp.internal", inside=inside)[0] == 200
    assert curl_for_test(url, "-H", f"Host: rebound.example:{port}", inside=inside)[0] == 421


def test_client_certificates_on_an_exposed_ssl_listener(lan, node_factory, tmp_path):
    ca = cert_pair_for_test("admin clients CA", ca=True)
    (tmp_path / "ca.pem").write_text(ca[0])
    crt, key = signed_pair_for_test(*ca, "operator")
    (tmp_path / "op.pem").write_text(crt)
    (tmp_path / "op.key").write_text(key)
    plain, tls = free_port(), free_port()
    node = node_factory("mtls", admin_listen=f"127.0.0.1:{plain}, 0.0.0.0:{tls} ssl",
                        admin_ssl_client_ca=str(tmp_path / "ca.pem"))
    _start_inside(lan, node)
    inside = tuple(lan.argv())
    url = f"https://{ADDRESS}:{tls}/services"
    cert = ("--cert", str(tmp_path / "op.pem"), "--key", str(tmp_path / "op.key"))
    assert curl_for_test(url, *cert, "-H", "Host: cp.example.com", inside=inside)[0] == 200
    assert curl_for_test(url, inside=inside)[0] == 0  # refused at the handshake
