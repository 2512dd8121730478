"""TLS on proxy listeners (certificates by SNI, RSA+ECDSA, default) and to upstreams."""
from __future__ import annotations

import subprocess
import uuid

import httpx
import pytest

from tests.integration.proxy.proxy_for_test import (
    Origin, WorkerProcess, cert_pair_for_test, pass_through_snapshot_for_test, route_for_test, service_for_test,
    snapshot_for_test,
)


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def tls_worker(origin, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("tls")
    (prefix / "ssl").mkdir()
    dc, dk = cert_pair_for_test("default.test")
    (prefix / "ssl" / "default.crt").write_text(dc)
    (prefix / "ssl" / "default.key").write_text(dk)
    rsa_cert, rsa_key = cert_pair_for_test("a.test")
    ec_cert, ec_key = cert_pair_for_test("a.test", kind="ec")
    wild_cert, wild_key = cert_pair_for_test("*.wild.test")
    certs = [{"id": str(uuid.uuid4()), "cert": rsa_cert, "key": rsa_key, "cert_alt": ec_cert, "key_alt": ec_key},
             {"id": str(uuid.uuid4()), "cert": wild_cert, "key": wild_key, "cert_alt": None, "key_alt": None}]
    snis = [{"id": str(uuid.uuid4()), "name": "a.test", "certificate": {"id": certs[0]["id"]}},
            {"id": str(uuid.uuid4()), "name": "*.wild.test", "certificate": {"id": certs[1]["id"]}}]
    svc = service_for_test(port=origin.port)
    routes = [route_for_test(svc, paths=["/"], strip_path=False)]
    w = WorkerProcess(snapshot_for_test(services=[svc], routes=routes, certificates=certs, snis=snis), prefix,
                      listen=["127.0.0.1:0 ssl"])
    yield w
    w.stop()


def _served_subject(port: int, servername: str | None, extra: list[str] = ()) -> str:
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *extra]
    if servername:
        cmd += ["-servername", servername]
    out = subprocess.run(cmd, input=b"", capture_output=True, timeout=10).stdout.decode()
    return next(line for line in out.splitlines() if line.startswith("subject="))


@pytest.mark.parametrize("sni,expected", [("a.test", "CN = a.test"), ("x.wild.test", "CN = *.wild.test"),
                                          ("unknown.test", "CN = default.test")])
def test_certificate_chosen_by_sni(tls_worker, sni, expected):
    assert _served_subject(tls_worker.port, sni).endswith(expected)


def test_ecdsa_pair_served_to_ecdsa_only_clients(tls_worker):
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{tls_worker.port}", "-servername", "a.test",
           "-sigalgs", "ECDSA+SHA256", "-tls1_2"]
    out = subprocess.run(cmd, input=b"", capture_output=True, timeout=10).stdout.decode()
    assert "Peer signature type: ECDSA" in out or "Server public key is 256 bit" in out


def test_https_request_is_proxied_with_https_forwarded_proto(tls_worker):
    r = httpx.get(f"https://127.0.0.1:{tls_worker.port}/x", verify=False)
    assert r.status_code == 200
    headers = dict((k.lower(), v) for k, v in r.json()["headers"])
    assert headers["x-forwarded-proto"] == "https"


def test_alpn_offers_http11(tls_worker):
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{tls_worker.port}", "-alpn", "h2,http/1.1"]
    out = subprocess.run(cmd, input=b"", capture_output=True, timeout=10).stdout.decode()
    assert "ALPN protocol: http/1.1" in out


def test_upstream_https_service(tls_worker, tmp_path):
    front = WorkerProcess(pass_through_snapshot_for_test(protocol="https", port=tls_worker.port, tls_verify=False),
                          tmp_path / "front")
    try:
        r = httpx.get(front.url + "/through-tls")
        assert r.status_code == 200
        assert r.json()["url"] == "/through-tls"
    finally:
        front.stop()


def test_upstream_tls_verify_failure_is_502(tls_worker, tmp_path):
    svc = service_for_test(protocol="https", port=tls_worker.port, tls_verify=True, retries=0)
    front = WorkerProcess(snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"])]), tmp_path / "f2")
    try:
        r = httpx.get(front.url + "/")
        assert r.status_code == 502
    finally:
        front.stop()
