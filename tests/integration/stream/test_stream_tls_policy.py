"""The stream listener's TLS termination follows meshway's TLS policy (AEAD-only TLS 1.2)."""
from __future__ import annotations

from tests.helpers.tls_policy import assert_aead_only_for_test
from tests.integration.stream.stream_for_test import route_for_test, service_for_test, snapshot_for_test


def test_ssl_stream_listener_refuses_cbc_and_chooses_aead(echo, proxy_factory):
    snap = snapshot_for_test([service_for_test("svc", echo.port)], [route_for_test("term", "svc", ("tls",))])
    proxy = proxy_factory(snap, listen_flags="ssl")
    assert_aead_only_for_test(proxy.port)


def test_tls_route_certificate_refuses_cbc_and_chooses_aead(echo, pki, proxy_factory):
    leaf = pki.leaf("one.test")  # a certificate entity: its context is built by certificate_context
    snap = snapshot_for_test([service_for_test("svc", echo.port)],
                             [route_for_test("term", "svc", ("tls",), snis=["one.test"])],
                             certificates=[{"id": "c", "cert": leaf["cert"], "key": leaf["key"],
                                            "cert_alt": None, "key_alt": None}],
                             snis=[{"id": "s", "name": "one.test", "certificate": {"id": "c"}}])
    proxy = proxy_factory(snap)
    assert_aead_only_for_test(proxy.port, "-servername", "one.test")
