"""A new config reuses the server contexts of unchanged certificates (cheap swaps on writes)."""
from meshway.proxy._tls import ServerTLS
from tests.fixtures.certs import cert_pair_for_test


def _snapshot(pairs: dict[str, tuple[str, str]]) -> dict:
    certs = [{"id": f"c-{name}", "cert": cert, "key": key} for name, (cert, key) in pairs.items()]
    snis = [{"name": f"{name}.test", "certificate": {"id": f"c-{name}"}} for name in pairs]
    return {"certificates": certs, "snis": snis}


def test_unchanged_certificates_keep_their_contexts_and_changed_ones_are_rebuilt():
    a, b = cert_pair_for_test("a.test"), cert_pair_for_test("b.test")
    first = ServerTLS(_snapshot({"a": a, "b": b}), None)
    b2 = cert_pair_for_test("b.test")
    second = ServerTLS(_snapshot({"a": a, "b": b2}), None)
    for h2 in (False, True):
        assert second.lookup("a.test", h2) is first.lookup("a.test", h2)
        assert second.lookup("b.test", h2) is not first.lookup("b.test", h2)
    assert second.lookup("a.test", False) is not second.lookup("a.test", True)  # ALPN flavours stay apart
