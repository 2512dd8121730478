"""acme with `storage: redis`: two DB-less nodes sharing one real redis-server (with a password
and a namespace) against Debian's pebble. pebble validates on node B's proxy only, so an order
started on node A succeeds only if B answers A's challenge from redis; both nodes then serve the
one certificate, kept under Kong's key names. A certificate within `renew_threshold_days` is
renewed in the background while the old one is still served."""
from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time

import httpx
import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.e2e.test_acme_plugin import HOST, acme_config_for_test, pebble_for_test  # noqa: F401 (fixture)
from tests.helpers.node import free_port

PASSWORD = "acme-s3cret"
NAMESPACE = "mesh:"


@pytest.fixture
def redis_with_password_for_test(tmp_path):
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir",
                             str(tmp_path), "--save", "", "--appendonly", "no", "--requirepass", PASSWORD],
                            stdout=subprocess.DEVNULL)
    try:
        for _ in range(250):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def served_certificate_for_test(port: int, host: str, root: str) -> bytes | None:
    """The certificate (DER) served for `host` if it verifies against pebble's root, else None."""
    context = ssl.create_default_context(cafile=root)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError:
        return None


def leaf_der_for_test(chain_pem: str) -> bytes:
    return x509.load_pem_x509_certificates(chain_pem.encode())[0].public_bytes(serialization.Encoding.DER)


def wait_served_for_test(port: int, host: str, root: str, unlike: bytes | None = None, seconds: float = 60) -> bytes:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        der = served_certificate_for_test(port, host, root)
        if der is not None and der != unlike:
            return der
        time.sleep(0.25)
    raise AssertionError(f"no {'new ' if unlike else ''}certificate for {host} on port {port} in {seconds} s")


def redis_acme_config_for_test(pebble, port: int, **extra) -> dict:
    return {**acme_config_for_test(pebble, "redis"), **extra, "storage_config": {"redis": {
        "host": "127.0.0.1", "port": port, "password": PASSWORD, "database": 2,
        "extra_options": {"namespace": NAMESPACE}}}}


def declarative_for_test(config: dict) -> str:
    return ('_format_version: "3.0"\n'
            "services:\n- name: acme-dummy\n  url: http://127.0.0.1:9\n"
            '  routes:\n  - paths: ["/.well-known/acme-challenge"]\n'
            f"plugins:\n- name: acme\n  config: {json.dumps(config)}\n")


def test_two_dbless_nodes_share_certificates_through_redis(node_factory, pebble_for_test, redis_with_password_for_test,
                                                           tmp_path):
    decl = tmp_path / "meshway.yml"
    a = node_factory("a", database="off", declarative_config=str(decl), workers="2")
    b = node_factory("b", database="off", declarative_config=str(decl), workers="1")
    pebble = pebble_for_test(b.proxy_port)  # the CA validates on node B only
    decl.write_text(declarative_for_test(redis_acme_config_for_test(pebble, redis_with_password_for_test)))
    for node in (a, b):
        node.conf.write_text(node.conf.read_text() + f"lua_ssl_trusted_certificate = {pebble.tls['ca']}\n")
        node.start()
    root = pebble.root(tmp_path / "pebble-root.pem")
    store = redis.Redis(port=redis_with_password_for_test, password=PASSWORD, db=2, decode_responses=True)

    created = httpx.post(a.admin + "/acme", json={"host": HOST}, timeout=120)
    assert created.status_code == 201, created.text + pebble.log.read_text()[-3000:]
    # Kong's keys and values, under the namespace; the challenge (`<token>#http-01`) is gone.
    certkey = json.loads(store.get(f"{NAMESPACE}kong_acme:cert_key:{HOST}"))
    assert certkey["cert"].startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" in certkey["key"]
    assert json.loads(store.get(f"{NAMESPACE}kong_acme:renew_config:{HOST}"))["host"] == HOST
    assert "PRIVATE KEY" in json.loads(store.get(next(store.scan_iter(f"{NAMESPACE}kong_acme:account:*"))))["key"]
    assert not list(store.scan_iter("*#http-01")) and not list(store.scan_iter("kong_acme:*"))

    # Both nodes serve that one certificate (a handshake before a node has read it gets the default).
    first = wait_served_for_test(a.proxy_ssl_port, HOST, root)
    assert wait_served_for_test(b.proxy_ssl_port, HOST, root) == first
    assert first == leaf_der_for_test(certkey["cert"])
    listed = httpx.get(b.admin + "/acme/certificates").json()["data"]
    assert [c["host"] for c in listed] == [HOST] and listed[0]["valid"] is True

    # A handshake on A for an allowed host without a certificate orders one (B answers the CA).
    other = "www.auto.meshway.test"
    assert served_certificate_for_test(a.proxy_ssl_port, other, root) is None
    ordered = wait_served_for_test(a.proxy_ssl_port, other, root, seconds=90)
    assert wait_served_for_test(b.proxy_ssl_port, other, root) == ordered
    assert store.exists(f"{NAMESPACE}kong_acme:cert_key:{other}")

    # Renewal: with a threshold of 2000 days pebble's 5-year certificates are due. A serves the old
    # certificate until the renewed one is in redis, then the new one.
    config = redis_acme_config_for_test(pebble, redis_with_password_for_test, renew_threshold_days=2000)
    posted = httpx.post(a.admin + "/config", content=declarative_for_test(config), headers={"Content-Type": "text/yaml"})
    assert posted.status_code == 201, posted.text
    seen, deadline = [], time.monotonic() + 90
    while time.monotonic() < deadline and (not seen or seen[-1] in (first, None)):
        seen.append(served_certificate_for_test(a.proxy_ssl_port, HOST, root))
        time.sleep(0.1)
    assert seen[-1] not in (first, None), "not renewed in 90 s: " + a.error_log()[-4000:]
    assert first in seen  # the old certificate was served while the renewal ran
    stored = json.loads(store.get(f"{NAMESPACE}kong_acme:cert_key:{HOST}"))["cert"]
    assert seen[-1] == leaf_der_for_test(stored)


def test_redis_down_is_a_500_and_never_stalls_the_node(node_factory, tmp_path):
    decl = tmp_path / "meshway.yml"
    node = node_factory(database="off", declarative_config=str(decl), workers="1")
    dead = free_port()  # nothing listens there
    decl.write_text(declarative_for_test({
        "account_email": "ops@meshway.test", "api_uri": "https://127.0.0.1:9/dir", "domains": [HOST],
        "storage": "redis", "storage_config": {"redis": {"host": "127.0.0.1", "port": dead, "timeout": 500}}}))
    node.start()
    listed = httpx.get(node.admin + "/acme/certificates", timeout=10)
    assert listed.status_code == 500 and str(dead) in listed.json()["message"], listed.text
    challenge = httpx.get(f"{node.proxy}/.well-known/acme-challenge/token", headers={"Host": HOST}, timeout=10)
    assert challenge.status_code == 500
    for _ in range(3):  # the handshake gets the node's default certificate, without waiting for redis
        started = time.monotonic()
        served = subprocess.run(["curl", "-skS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--resolve",
                                 f"{HOST}:{node.proxy_ssl_port}:127.0.0.1", f"https://{HOST}:{node.proxy_ssl_port}/x"],
                                capture_output=True, text=True)
        assert served.stdout == "404" and time.monotonic() - started < 2, served
    assert httpx.get(f"{node.proxy}/.well-known/acme-challenge/x", headers={"Host": HOST}).text == "Not found\n"


@pytest.fixture
def tls_redis_for_test(tmp_path):
    """redis-server on TLS only (its own CA, a certificate for 127.0.0.1), with an ACL user `acme`."""
    from tests.e2e.test_acme_plugin import _ca_and_server_cert_for_test

    directory = tmp_path / "redis-tls"
    directory.mkdir()
    tls = _ca_and_server_cert_for_test(directory, "test redis CA")
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(tls["cert"]), "--tls-key-file", str(tls["key"]),
                             "--tls-ca-cert-file", str(tls["ca"]), "--tls-auth-clients", "no", "--dir", str(directory),
                             "--save", "", "--user", "acme", "on", f">{PASSWORD}", "~*", "&*", "+@all",
                             "--user", "default", "off"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(250):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield port, tls["ca"]
    finally:
        proc.terminate()
        proc.wait(5)


def test_redis_over_tls_with_an_acl_user(node_factory, pebble_for_test, tls_redis_for_test, tmp_path):
    """ssl + ssl_verify (against lua_ssl_trusted_certificate), username + password, database."""
    port, redis_ca = tls_redis_for_test
    decl = tmp_path / "meshway.yml"
    node = node_factory("tls", database="off", declarative_config=str(decl), workers="1")
    untrusting = node_factory("untrusting", database="off", declarative_config=str(decl), workers="1")
    pebble = pebble_for_test(node.proxy_port)
    config = {**acme_config_for_test(pebble, "redis"), "storage_config": {"redis": {
        "host": "127.0.0.1", "port": port, "ssl": True, "ssl_verify": True, "username": "acme", "password": PASSWORD,
        "database": 3, "timeout": 2000}}}
    decl.write_text(declarative_for_test(config))
    bundle = tmp_path / "trusted.pem"  # Kong's lua_ssl_trusted_certificate: the CA's and redis's issuers
    bundle.write_text(pebble.tls["ca"].read_text() + redis_ca.read_text())
    node.conf.write_text(node.conf.read_text() + f"lua_ssl_trusted_certificate = {bundle}\n")
    untrusting.conf.write_text(untrusting.conf.read_text() + f"lua_ssl_trusted_certificate = {pebble.tls['ca']}\n")
    node.start()
    untrusting.start()
    created = httpx.post(node.admin + "/acme", json={"host": HOST}, timeout=120)
    assert created.status_code == 201, created.text + pebble.log.read_text()[-3000:]
    root = pebble.root(tmp_path / "pebble-root.pem")
    served = wait_served_for_test(node.proxy_ssl_port, HOST, root)
    store = redis.Redis(port=port, username="acme", password=PASSWORD, db=3, ssl=True, ssl_ca_certs=str(redis_ca))
    assert served == leaf_der_for_test(json.loads(store.get(f"kong_acme:cert_key:{HOST}"))["cert"])
    # ssl_verify: a node that does not trust redis's CA refuses the connection.
    refused = httpx.get(untrusting.admin + "/acme/certificates", timeout=10)
    assert refused.status_code == 500 and "certificate verify failed" in refused.json()["message"], refused.text
