"""Kong's `env` vault on real nodes: `{vault://...}` references in a credential and a plugin's
config, resolved when the config is compiled (the stored entity keeps the reference), and a
400 naming the field for a reference that does not resolve."""
from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_node_lifecycle import _eventually, _origin_for_test

SECRET = "key-from-the-environment"


@pytest.fixture
def secret_env(monkeypatch):
    # the node started by the test inherits the test's environment, as a node under systemd would
    monkeypatch.setenv("MWTEST_API_KEY", SECRET)
    monkeypatch.setenv("APP_MWTEST_TOKEN", '{"token": "from-json"}')


def _keyed(node, key: str | None) -> int:
    return httpx.get(node.proxy + "/secure/x", headers={"apikey": key} if key else {}).status_code


def test_admin_api_vault_and_references(node_factory, secret_env):
    origin = _origin_for_test()
    try:
        node = node_factory()
        node.start()
        a = node.admin
        vault = httpx.post(a + "/vaults", json={"prefix": "app-env", "name": "env", "config": {"prefix": "APP_"}})
        assert vault.status_code == 201, vault.text
        assert httpx.get(a + "/vaults/app-env").json()["config"] == {"prefix": "APP_"}
        assert httpx.post(a + "/services", json={"name": "s", "url": f"http://127.0.0.1:{origin.port}"}).status_code == 201
        assert httpx.post(a + "/services/s/routes", json={"paths": ["/secure"]}).status_code == 201
        assert httpx.post(a + "/services/s/plugins", json={"name": "key-auth"}).status_code == 201
        assert httpx.post(a + "/consumers", json={"username": "alice"}).status_code == 201
        for key in ("{vault://env/mwtest-api-key}", "{vault://app-env/mwtest-token/token}"):
            cred = httpx.post(a + "/consumers/alice/key-auth", json={"key": key})
            assert cred.status_code == 201 and cred.json()["key"] == key, cred.text  # the reference is stored
        _eventually(lambda: _keyed(node, SECRET) == 200)
        assert _keyed(node, "from-json") == 200
        assert _keyed(node, "{vault://env/mwtest-api-key}") == 401  # the reference text is no key
        assert _keyed(node, None) == 401

        bad = httpx.post(a + "/consumers/alice/key-auth", json={"key": "{vault://env/mwtest-not-set}"})
        assert bad.status_code == 400, bad.text
        assert bad.json()["fields"] == {
            "key": "could not resolve {vault://env/mwtest-not-set}: environment variable MWTEST_NOT_SET is not set"}
        bad = httpx.post(a + "/plugins", json={"name": "rate-limiting", "config": {
            "minute": 5, "policy": "redis", "redis": {"host": "127.0.0.1", "password": "{vault://nowhere/pw}"}}})
        assert bad.status_code == 400 and bad.json()["fields"] == {
            "config": {"redis": {"password": "vault not found (nowhere) [{vault://nowhere/pw}]"}}}, bad.text
    finally:
        origin.stop()


DECLARATIVE = """
_format_version: "3.0"
vaults:
- prefix: app-env
  name: env
  config: {prefix: APP_}
services:
- name: s
  url: http://127.0.0.1:%d
  routes: [{paths: [/secure]}]
  plugins: [{name: key-auth}]
consumers:
- username: alice
  keyauth_credentials:
  - key: "{vault://env/mwtest-api-key}"
  - key: %s
"""


def test_dbless_file_and_post_config_with_references(node_factory, secret_env, tmp_path):
    origin = _origin_for_test()
    try:
        path = tmp_path / "kong.yml"
        path.write_text(DECLARATIVE % (origin.port, '"{vault://app-env/mwtest-token/token}"'))
        node = node_factory(database="off", declarative_config=str(path))
        node.start()
        assert _keyed(node, SECRET) == 200 and _keyed(node, "from-json") == 200 and _keyed(node, "x") == 401
        exported = httpx.get(node.admin + "/config").json()["config"]
        assert "{vault://env/mwtest-api-key}" in exported and SECRET not in exported  # secrets stay out

        refused = httpx.post(node.admin + "/config", json={"config": DECLARATIVE % (origin.port, '"{vault://env/nope}"')})
        assert refused.status_code == 400, refused.text
        assert refused.json()["fields"] == {
            "consumers[0].keyauth_credentials[1].key": "could not resolve {vault://env/nope}: environment variable NOPE is not set"}
        assert _keyed(node, SECRET) == 200  # the running config stays
    finally:
        origin.stop()


def _served_common_name(port: int, sni: str) -> str:
    import socket
    import ssl

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=sni) as tls:
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_certificate_from_the_environment_is_served(node_factory, monkeypatch):
    from tests.fixtures.certs import cert_pair_for_test

    cert, key = cert_pair_for_test("vaulted.test")
    monkeypatch.setenv("MWTEST_TLS_CERT", cert)
    monkeypatch.setenv("MWTEST_TLS_KEY", key)
    node = node_factory()
    node.start()
    created = httpx.post(node.admin + "/certificates", json={
        "cert": "{vault://env/mwtest-tls-cert}", "key": "{vault://env/mwtest-tls-key}", "snis": ["vaulted.test"]})
    assert created.status_code == 201 and created.json()["cert"] == "{vault://env/mwtest-tls-cert}", created.text
    _eventually(lambda: _served_common_name(node.proxy_ssl_port, "vaulted.test") == "vaulted.test")
    bad = httpx.post(node.admin + "/certificates", json={"cert": "{vault://env/mwtest-tls-cert}", "key": "{vault://env/mwtest-nokey}"})
    assert bad.status_code == 400 and "key" in bad.json()["fields"], bad.text
