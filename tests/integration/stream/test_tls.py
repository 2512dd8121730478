"""TLS through the stream listener: termination by SNI, passthrough by SNI, tls:// upstreams."""
from __future__ import annotations

import socket
import ssl
import subprocess

from tests.integration.stream.stream_for_test import (HOST, recv_all_for_test, route_for_test, service_for_test,
                                                      snapshot_for_test)

HELLO = b"Hello from Service B\n"


def tls_client_for_test(port: int, server_name: str | None, ca_path: str | None = None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=ca_path) if ca_path else ssl._create_unverified_context()
    raw = socket.create_connection((HOST, port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname=server_name)


def certificate_entities_for_test(pki, *names: str) -> dict:
    certs, snis = [], []
    for i, name in enumerate(names):
        leaf = pki.leaf(name)
        certs.append({"id": f"cert-{i}", "cert": leaf["cert"], "key": leaf["key"], "cert_alt": None, "key_alt": None})
        snis.append({"id": f"sni-{i}", "name": name, "certificate": {"id": f"cert-{i}"}})
    return {"certificates": certs, "snis": snis}


def test_tls_route_terminates_with_the_certificate_for_the_sni(echo, pki, proxy_factory):
    snap = snapshot_for_test([service_for_test("svc", echo.port)],
                             [route_for_test("term", "svc", ("tls",), snis=["one.test", "two.test"])],
                             **certificate_entities_for_test(pki, "one.test", "two.test"))
    proxy = proxy_factory(snap)
    for name in ("one.test", "two.test"):  # verification against the test CA proves which cert came back
        with tls_client_for_test(proxy.port, name, pki.ca_path) as client:
            client.sendall(b"over tls")
            assert client.recv(100) == b"over tls"
    line = proxy.wait_line("sni=one.test")
    assert "route=term" in line and "mode=terminate" in line and "upstream_tls=no" in line


def test_unknown_sni_gets_the_default_self_signed_certificate(echo, proxy_factory):
    snap = snapshot_for_test([service_for_test("svc", echo.port)], [route_for_test("term", "svc", ("tls",))])
    proxy = proxy_factory(snap)
    with tls_client_for_test(proxy.port, "nobody.test") as client:
        der = client.getpeercert(binary_form=True)
        client.sendall(b"x")
        assert client.recv(1) == b"x"
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    assert "meshway default certificate" in cert.subject.rfc4514_string()
    # valid one year, as the HTTP listeners' generated certificate (issue 18, item 8: it was ten)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 366


def test_openssl_s_client_through_a_terminating_route(procs, pki, proxy_factory):
    upstream = procs.ncat_server("--sh-exec", "echo Hello from Service B")
    snap = snapshot_for_test([service_for_test("svc", upstream)],
                             [route_for_test("term", "svc", ("tls",), snis=["one.test"])],
                             **certificate_entities_for_test(pki, "one.test"))
    proxy = proxy_factory(snap)
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"{HOST}:{proxy.port}", "-servername", "one.test",
         "-CAfile", pki.ca_path, "-verify_return_error", "-quiet"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
    )
    assert HELLO in result.stdout, result.stderr


def test_ncat_ssl_client_and_plain_client_share_one_listener(procs, pki, proxy_factory):
    upstream = procs.ncat_server("--sh-exec", "echo Hello from Service B")
    snap = snapshot_for_test([service_for_test("svc", upstream)],
                             [route_for_test("plain", "svc"), route_for_test("term", "svc", ("tls",))])
    proxy = proxy_factory(snap)
    tls = subprocess.run(["ncat", "--ssl", "--recv-only", HOST, str(proxy.port)],
                         stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    assert tls.stdout == HELLO
    with socket.create_connection((HOST, proxy.port), timeout=5) as plain:
        plain.sendall(b"\n")  # a plain client that talks first is told apart at its first byte
        assert recv_all_for_test(plain) == HELLO
    assert "route=term" in proxy.wait_line("kind=tls")
    assert "route=plain" in proxy.wait_line("kind=tcp")


def test_tls_passthrough_routes_by_sni_and_forwards_the_encrypted_bytes(procs, pki, proxy_factory, echo):
    leaf = pki.leaf("pass.test")
    upstream = procs.ncat_server("--ssl", "--ssl-cert", leaf["cert_path"], "--ssl-key", leaf["key_path"],
                                 "--sh-exec", "echo Hello from Service B")
    snap = snapshot_for_test(
        [service_for_test("tls-upstream", upstream), service_for_test("echo", echo.port)],
        [route_for_test("pass", "tls-upstream", ("tls_passthrough",), snis=["pass.test"]),
         route_for_test("term", "echo", ("tls",), snis=["term.test"])],
        **certificate_entities_for_test(pki, "term.test"),
    )
    proxy = proxy_factory(snap)
    with tls_client_for_test(proxy.port, "pass.test", pki.ca_path) as client:
        # the certificate is ncat's own: the proxy never decrypted anything
        assert client.getpeercert()["subject"] == ((("commonName", "pass.test"),),)
        assert recv_all_for_test(client) == HELLO
    with tls_client_for_test(proxy.port, "term.test", pki.ca_path) as client:
        client.sendall(b"terminated")
        assert client.recv(100) == b"terminated"
    assert "mode=passthrough" in proxy.wait_line("route=pass")


def test_tls_service_opens_tls_to_the_upstream_and_logs_its_subject(procs, pki, proxy_factory):
    leaf = pki.leaf("service-b.test")
    upstream = procs.ncat_server("--ssl", "--ssl-cert", leaf["cert_path"], "--ssl-key", leaf["key_path"],
                                 "--sh-exec", "echo Hello from Service B")
    snap = snapshot_for_test([service_for_test("svc", upstream, protocol="tls")], [route_for_test("rt", "svc")])
    proxy = proxy_factory(snap)
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        assert recv_all_for_test(client) == HELLO
    line = proxy.wait_line("close=")
    assert "upstream_tls=yes" in line and 'upstream_subject="CN=service-b.test"' in line


def test_tls_service_with_verification_refuses_an_untrusted_upstream(procs, pki, proxy_factory):
    leaf = pki.leaf("service-b.test")
    upstream = procs.ncat_server("--ssl", "--ssl-cert", leaf["cert_path"], "--ssl-key", leaf["key_path"],
                                 "--sh-exec", "echo Hello from Service B")
    service = service_for_test("svc", upstream, protocol="tls", host="localhost", tls_verify=True)
    proxy = proxy_factory(snapshot_for_test([service], [route_for_test("rt", "svc")]))
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        assert recv_all_for_test(client) == b""
    assert "close=upstream_tls_failed" in proxy.wait_line("close=")


def test_garbage_after_a_tls_header_fails_the_handshake_cleanly(echo, proxy_factory):
    snap = snapshot_for_test([service_for_test("svc", echo.port)], [route_for_test("term", "svc", ("tls",))])
    proxy = proxy_factory(snap)
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        client.sendall(b"\x16\x03\x01\x00\x05hello")
        assert recv_all_for_test(client)[:1] in (b"", b"\x15")  # nothing, or a TLS alert
    assert "close=client_tls_failed" in proxy.wait_line("close=")


def test_origins_setting_redirects_a_tcp_service_to_a_tls_origin(procs, pki, proxy_factory):
    leaf = pki.leaf("service-b.test")
    upstream = procs.ncat_server("--ssl", "--ssl-cert", leaf["cert_path"], "--ssl-key", leaf["key_path"],
                                 "--sh-exec", "echo Hello from Service B")
    snap = snapshot_for_test([service_for_test("svc", 19000, host="127.0.0.5")], [route_for_test("rt", "svc")])
    proxy = proxy_factory(snap, origins=f"tcp://127.0.0.5:19000=tls://{HOST}:{upstream}")
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        assert recv_all_for_test(client) == HELLO
    line = proxy.wait_line("close=")
    assert f"upstream={HOST}:{upstream}" in line and "upstream_tls=yes" in line


def test_ssl_listener_terminates_every_client_and_refuses_plain_ones(echo, proxy_factory):
    snap = snapshot_for_test([service_for_test("svc", echo.port)],
                             [route_for_test("plain", "svc"), route_for_test("term", "svc", ("tls",))])
    proxy = proxy_factory(snap, listen_flags="ssl")
    with tls_client_for_test(proxy.port, None) as client:
        client.sendall(b"secure")
        assert client.recv(100) == b"secure"
    assert "route=term" in proxy.wait_line("close=")
    with socket.create_connection((HOST, proxy.port), timeout=5) as plain:
        plain.sendall(b"plain words\n")
        assert b"plain words" not in recv_all_for_test(plain)
    assert "close=client_tls_failed" in proxy.wait_line("client_tls_failed")
