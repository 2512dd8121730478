"""Per-mesh mTLS: Kuma's durations, backend checks naming the field, CA secrets made once."""
from __future__ import annotations

import base64

import pytest
from cryptography import x509

from meshway.mesh._mtls import fingerprint, new_secrets, seconds, trust_bundles
from meshway.mesh._resources import ResourceError, parse_resource


@pytest.mark.parametrize("text, value", [("1d", 86400), ("10y", 3650 * 86400), ("1h30m", 5400), ("90s", 90),
                                         ("500ms", 0.5)])
def test_kuma_durations(text, value):
    assert seconds(text) == value


@pytest.mark.parametrize("text", ["", "1", "1w", "d1", "1d x"])
def test_not_durations(text):
    with pytest.raises(ValueError):
        seconds(text)


def mesh(*backends: dict, enabled: str = "ca-1") -> dict:
    return {"type": "Mesh", "name": "default", "mtls": {"enabledBackend": enabled, "backends": list(backends)}}


@pytest.mark.parametrize("backend, field", [
    ({"name": "ca-1", "type": "vault"}, "mtls.backends[0].type"),
    ({"name": "ca-1", "conf": {"caCert": {"RSAbits": 1024}}}, "mtls.backends[0].conf.caCert.RSAbits"),
    ({"name": "ca-1", "conf": {"caCert": {"expiration": "forever"}}}, "mtls.backends[0].conf.caCert.expiration"),
    ({"name": "ca-1", "dpCert": {"rotation": {"expiration": "0s"}}}, "mtls.backends[0].dpCert.rotation.expiration"),
    ({"name": "ca-1", "type": "provided", "conf": {"cert": {"file": "/nonexistent/ca.crt"},
                                                  "key": {"inlineString": "nope"}}}, "mtls.backends[0].conf.cert"),
])
def test_bad_backends_name_the_field(backend, field):
    with pytest.raises(ResourceError) as e:
        parse_resource(mesh(backend))
    assert field in [f for f, _ in e.value.causes], e.value.causes


def test_a_builtin_ca_is_made_once_with_kumas_secret_names_and_trusted():
    resource = parse_resource(mesh({"name": "ca-1", "type": "builtin", "conf": {"caCert": {"RSAbits": 2048}}}))
    made = new_secrets(resource, set())
    assert [s["name"] for s in made] == ["default.ca-builtin-cert-ca-1", "default.ca-builtin-key-ca-1"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(made[0]["data"]))
    assert cert.public_key().key_size == 2048 and cert.issuer == cert.subject
    assert new_secrets(resource, {s["name"] for s in made}) == []  # kept, not remade
    bundles = trust_bundles([resource], {("default", s["name"]): s for s in made})
    assert list(bundles) == ["default"] and "BEGIN CERTIFICATE" in bundles["default"][0]
    assert fingerprint({"meshes": [resource]}, "default") == "ca-1:builtin"
    assert fingerprint({"meshes": [{"type": "Mesh", "name": "default"}]}, "default") is None
