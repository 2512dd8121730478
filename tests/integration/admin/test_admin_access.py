"""Who may drive the Admin API of a real node: web pages (CORS, Origin), Host names (DNS
rebinding), tokens and client certificates; and the start-up refusal of an exposed Admin API."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess

import pytest

from tests.fixtures.certs import cert_pair_for_test, signed_pair_for_test
from tests.helpers.node import NodeForTest, free_port, node_factory  # noqa: F401  (fixture)

EVIL = "http://evil.example"
DASHBOARD = "http://dash.test:8002"


def curl_for_test(url: str, *args: str, inside: tuple[str, ...] = ()) -> tuple[int, dict[str, str], str]:
    """(status, headers with lower-case names, body) of one curl request; status 0 if it failed.
    `inside`: a command prefix such as `ip netns exec NAME`."""
    out = subprocess.run([*inside, "curl", "-s", "-k", "-D", "-", "--max-time", "10", *args, url],
                         capture_output=True, timeout=20)
    if out.returncode != 0:
        return 0, {}, out.stderr.decode()
    head, _, body = out.stdout.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = NodeForTest(tmp_path_factory.mktemp("access"), "node", {})  # the defaults a user gets
    node.start()
    yield node
    node.stop()


# ---- web pages: CORS and Origin ------------------------------------------------------------

def test_foreign_page_gets_no_cors_headers_and_cannot_write(node):
    status, headers, body = curl_for_test(node.admin + "/services", "-H", f"Origin: {EVIL}")
    assert status == 403 and "access-control-allow-origin" not in headers
    assert "admin_gui_origin" in json.loads(body)["message"]
    # a form POST needs no preflight: without the Origin check it would create the service
    status, headers, _ = curl_for_test(node.admin + "/services", "-H", f"Origin: {EVIL}",
                                       "-d", "name=planted", "-d", "url=http://127.0.0.1:9")
    assert status == 403 and "access-control-allow-origin" not in headers
    assert curl_for_test(node.admin + "/services/planted")[0] == 404


def test_foreign_preflight_fails(node):
    status, headers, _ = curl_for_test(node.admin + "/services", "-X", "OPTIONS", "-H", f"Origin: {EVIL}",
                                       "-H", "Access-Control-Request-Method: DELETE",
                                       "-H", "Access-Control-Request-Headers: content-type")
    assert status == 403
    assert not any(h.startswith("access-control-") for h in headers)


def test_tools_without_origin_get_no_cors_headers(node):
    status, headers, _ = curl_for_test(node.admin + "/services")
    assert status == 200 and "access-control-allow-origin" not in headers


def test_dashboard_origin_preflight_and_request(node_factory):
    node = node_factory(admin_gui_url=DASHBOARD + "/manager")  # Kong's name; the origin is kept
    node.start()
    status, headers, _ = curl_for_test(node.admin + "/services", "-X", "OPTIONS", "-H", f"Origin: {DASHBOARD}",
                                       "-H", "Access-Control-Request-Method: POST",
                                       "-H", "Access-Control-Request-Headers: content-type,kong-admin-token")
    assert status == 204
    assert headers["access-control-allow-origin"] == DASHBOARD
    assert headers["access-control-allow-credentials"] == "true"
    assert "PATCH" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == "content-type,kong-admin-token"
    status, headers, _ = curl_for_test(node.admin + "/services", "-H", f"Origin: {DASHBOARD}",
                                       "--json", '{"name": "from-dashboard", "url": "http://127.0.0.1:9"}')
    assert status == 201 and headers["access-control-allow-origin"] == DASHBOARD
    assert "Origin" in headers["vary"]
    assert curl_for_test(node.admin + "/services", "-H", f"Origin: {EVIL}")[0] == 403


# ---- Host names: DNS rebinding --------------------------------------------------------------

def test_rebinding_host_is_refused(node):
    status, headers, body = curl_for_test(node.admin + "/", "-H", f"Host: evil.example:{node.admin_port}")
    assert status == 421 and "admin_server_names" in json.loads(body)["message"]
    assert headers["content-type"].startswith("application/json")
    status, _, _ = curl_for_test(node.admin + "/services", "-H", "Host: evil.example", "-d", "name=rebound",
                                 "-d", "url=http://127.0.0.1:9")
    assert status == 421 and curl_for_test(node.admin + "/services/rebound")[0] == 404
    # the listener's own names, with any port (an SSH tunnel changes it) or none
    for host in ("localhost", "LOCALHOST:{port}", "127.0.0.1:{port}", "[::1]:{port}", "localhost:9999"):
        assert curl_for_test(node.admin + "/", "-H", "Host: " + host.format(port=node.admin_port))[0] == 200, host
    for host in ("", "localhost:x", "127.0.0.1.evil.example", "[::1]evil"):
        assert curl_for_test(node.admin + "/", "-H", "Host: " + host)[0] == 421, host


def test_admin_server_names_adds_names(node_factory):
    node = node_factory(admin_server_names="admin.internal")
    node.start()
    assert curl_for_test(node.admin + "/", "-H", f"Host: admin.internal:{node.admin_port}")[0] == 200
    assert curl_for_test(node.admin + "/", "-H", "Host: other.internal")[0] == 421


# ---- tokens ---------------------------------------------------------------------------------

def test_tokens_create_use_revoke(node_factory):
    node = node_factory(admin_auth="token")
    created = node.cli("admin", "token", "create", "ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    node.start()
    status, _, body = curl_for_test(node.admin + "/services")
    assert status == 401 and json.loads(body) == {"message": "Invalid credentials. Token or User credentials required"}
    assert curl_for_test(node.admin + "/services", "-H", "Kong-Admin-Token: " + token[:-1] + "x")[0] == 401
    assert curl_for_test(node.admin + "/services", "-H", "Kong-Admin-Token: " + token)[0] == 200
    assert curl_for_test(node.admin + "/services", "-H", "Meshway-Admin-Token: " + token)[0] == 200
    # the database keeps a hash, never the token
    with sqlite3.connect(node.prefix / "meshway.db") as db:
        stored = db.execute("select name, token_hash from admin_tokens").fetchall()
    assert stored == [("ci", hashlib.sha256(token.encode()).hexdigest())]
    assert token not in (node.prefix / "meshway.db").read_bytes().decode("latin-1")
    listed = node.cli("admin", "token", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("ci\t") and token not in listed.stdout
    revoked = node.cli("admin", "token", "revoke", "ci")
    assert revoked.returncode == 0, revoked.stderr
    assert curl_for_test(node.admin + "/services", "-H", "Kong-Admin-Token: " + token)[0] == 401


def test_token_commands_refuse_mistakes(node_factory):
    node = node_factory()
    assert node.cli("admin", "token", "create", "ops").returncode == 0
    again = node.cli("admin", "token", "create", "ops")
    assert again.returncode == 1 and "already exists" in again.stderr
    gone = node.cli("admin", "token", "revoke", "nobody")
    assert gone.returncode == 1 and "no token named 'nobody'" in gone.stderr


# ---- client certificates on the ssl listener ------------------------------------------------

@pytest.fixture
def client_certs(tmp_path):
    ca_cert, ca_key = cert_pair_for_test("admin clients CA", ca=True)
    other_ca = cert_pair_for_test("someone else's CA", ca=True)
    files = {"ca": ca_cert}
    for name, (crt, key) in {"good": signed_pair_for_test(ca_cert, ca_key, "operator"),
                             "stranger": signed_pair_for_test(*other_ca, "stranger")}.items():
        files[name], files[name + "_key"] = crt, key
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_text(text)
    return paths


def test_client_certificate_on_ssl_listener(node_factory, client_certs):
    plain, tls = free_port(), free_port()
    node = node_factory(admin_listen=f"127.0.0.1:{plain}, 127.0.0.1:{tls} ssl",
                        admin_ssl_client_ca=str(client_certs["ca"]))
    node.start()
    url = f"https://127.0.0.1:{tls}/services"
    good = ["--cert", str(client_certs["good"]), "--key", str(client_certs["good_key"])]
    stranger = ["--cert", str(client_certs["stranger"]), "--key", str(client_certs["stranger_key"])]
    assert curl_for_test(url, *good)[0] == 200
    assert curl_for_test(url)[0] == 0  # no certificate: refused at the handshake
    assert curl_for_test(url, *stranger)[0] == 0
    assert curl_for_test(f"http://127.0.0.1:{plain}/services")[0] == 200  # admin_auth = off on plain HTTP


def test_client_certificate_or_token(node_factory, client_certs):
    plain, tls = free_port(), free_port()
    node = node_factory(admin_listen=f"127.0.0.1:{plain}, 127.0.0.1:{tls} ssl", admin_auth="token",
                        admin_ssl_client_ca=str(client_certs["ca"]))
    node.start()
    good = ["--cert", str(client_certs["good"]), "--key", str(client_certs["good_key"])]
    assert curl_for_test(f"https://127.0.0.1:{tls}/services", *good)[0] == 200
    assert curl_for_test(f"http://127.0.0.1:{plain}/services")[0] == 401


def test_unreadable_client_ca_stops_start(node_factory, tmp_path):
    node = node_factory(admin_ssl_client_ca=str(tmp_path / "missing.pem"))
    result = node.start(check=False)
    assert result.returncode != 0 and f"cannot load admin_ssl_client_ca {tmp_path / 'missing.pem'}" in result.stderr


# ---- start-up refusal -----------------------------------------------------------------------

def test_exposed_admin_api_without_auth_is_refused(node_factory):
    port = free_port()
    node = node_factory(admin_listen=f"0.0.0.0:{port}")
    for command in ("start", "check"):
        result = node.cli(command)
        assert result.returncode == 1, result.stdout
        for key in ("admin_listen", "admin_auth", "admin_ssl_client_ca", "admin_listen_insecure"):
            assert key in result.stderr
    assert not (node.prefix / "pids").exists()
    with pytest.raises(OSError):  # nothing was bound
        import socket
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# ---- hybrid mode: the cluster listener is not the Admin API ---------------------------------

def test_hybrid_with_admin_tokens_on_the_control_plane(node_factory, tmp_path):
    import time

    import httpx

    from tests.e2e.test_node_lifecycle import _origin_for_test
    from tests.helpers.node import run_cli_for_test

    cert = (str(tmp_path / "cluster.crt"), str(tmp_path / "cluster.key"))
    assert run_cli_for_test("hybrid", "gen-cert", *cert).returncode == 0
    cluster = free_port()
    cp = node_factory("cp", role="control_plane", proxy_listen="off", admin_auth="token",
                      cluster_listen=f"127.0.0.1:{cluster}", cluster_cert=cert[0], cluster_cert_key=cert[1])
    token = cp.cli("admin", "token", "create", "ops").stdout.strip()
    cp.start()
    dp = node_factory("dp", role="data_plane", database="off", admin_listen="off",
                      cluster_control_plane=f"127.0.0.1:{cluster}", cluster_cert=cert[0], cluster_cert_key=cert[1])
    dp.start()
    origin = _origin_for_test()
    try:
        auth = {"Kong-Admin-Token": token}
        assert httpx.post(cp.admin + "/services", json={"name": "s", "url": f"http://127.0.0.1:{origin.port}"}).status_code == 401
        assert httpx.post(cp.admin + "/services", headers=auth,
                          json={"name": "s", "url": f"http://127.0.0.1:{origin.port}"}).status_code == 201
        assert httpx.post(cp.admin + "/services/s/routes", headers=auth, json={"paths": ["/"]}).status_code == 201
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and httpx.get(dp.proxy + "/x").status_code != 200:
            time.sleep(0.1)
        assert httpx.get(dp.proxy + "/x").text == "origin saw /x"
        planes = httpx.get(cp.admin + "/clustering/data-planes", headers=auth).json()
        assert len(planes.get("data", planes)) == 1
    finally:
        origin.stop()


def test_resource_commands_send_the_token(node_factory):
    from tests.helpers.node import run_cli_for_test

    node = node_factory(admin_auth="token")
    token = node.cli("admin", "token", "create", "kumactl").stdout.strip()
    node.start()
    refused = run_cli_for_test("get", "meshes", "--cp-address", node.admin)
    assert refused.returncode != 0 and "Invalid credentials" in refused.stderr
    listed = run_cli_for_test("get", "meshes", "--cp-address", node.admin, "--admin-token", token)
    assert listed.returncode == 0 and "default" in listed.stdout, listed.stderr
