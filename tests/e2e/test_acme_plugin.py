"""acme against Debian's pebble ACME server: the http-01 challenge answered on the node's proxy,
a certificate issued through `POST /acme` and then served by SNI (curl --resolve with pebble's
root). pebble validates against the node's loopback proxy port (its config's httpPort), and
resolves names through pebble-challtestsrv's DNS (every name is 127.0.0.1): loopback only."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers.node import free_port

HOST = "acme.meshway.test"


def _ca_and_server_cert_for_test(directory, ca_cn: str = "test pebble listener CA"):
    """A CA, and a certificate it signs for 127.0.0.1 (pebble's own HTTPS listener)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_cn)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=2)).add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), False)
            .sign(ca_key, hashes.SHA256()))
    paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def _wait_port_for_test(port: int) -> None:
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port}")


class PebbleForTest:
    """pebble + pebble-challtestsrv (DNS only, every name 127.0.0.1), validating on `http_port`."""

    def __init__(self, directory, http_port: int) -> None:
        self.tls = _ca_and_server_cert_for_test(directory)
        dns, mgmt, self.port, self.mgmt = free_port(), free_port(), free_port(), free_port()
        self.procs = [subprocess.Popen(
            [shutil.which("pebble-challtestsrv"), "-dns01", f"127.0.0.1:{dns}", "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", f"127.0.0.1:{mgmt}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        config = directory / "pebble.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.mgmt}",
            "certificate": str(self.tls["cert"]), "privateKey": str(self.tls["key"]), "httpPort": http_port,
            "tlsPort": free_port(), "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
        self.log = directory / "pebble.log"
        # Authorizations are always reused (Let's Encrypt reuses them for 30 days): a renewal meets valid ones.
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "100"}
        self.procs.append(subprocess.Popen([shutil.which("pebble"), "-config", str(config), "-dnsserver", f"127.0.0.1:{dns}"],
                                           stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env))
        _wait_port_for_test(self.port)
        _wait_port_for_test(self.mgmt)
        self.directory = f"https://127.0.0.1:{self.port}/dir"

    def root(self, path) -> str:
        """pebble's root CA (made at its start), which signs what it issues."""
        pem = httpx.get(f"https://127.0.0.1:{self.mgmt}/roots/0", verify=ssl.create_default_context(cafile=str(self.tls["ca"]))).text
        path.write_text(pem)
        return str(path)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.wait(5)


@pytest.fixture
def pebble_for_test(tmp_path):
    made = []

    def make(http_port: int) -> PebbleForTest:
        made.append(PebbleForTest(tmp_path, http_port))
        return made[-1]

    yield make
    for pebble in made:
        pebble.stop()


def served_by_sni_for_test(node, root: str, host: str = HOST) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{ssl_verify_result}", "--max-time", "10",
                           "--resolve", f"{host}:{node.proxy_ssl_port}:127.0.0.1", "--cacert", root,
                           f"https://{host}:{node.proxy_ssl_port}/"], capture_output=True, text=True)


def acme_config_for_test(pebble: PebbleForTest, storage: str) -> dict:
    return {"account_email": "ops@meshway.test", "api_uri": pebble.directory, "tos_accepted": True,
            "domains": [HOST, "*.auto.meshway.test"], "storage": storage, "cert_type": "ecc", "fail_backoff_minutes": 0}


def test_certificate_issued_by_pebble_and_served_by_sni(node_factory, pebble_for_test, tmp_path):
    node = node_factory(workers="2", log_level="debug")
    pebble = pebble_for_test(node.proxy_port)
    (node.conf).write_text(node.conf.read_text() + f"lua_ssl_trusted_certificate = {pebble.tls['ca']}\n")
    node.start()
    admin = httpx.Client(base_url=node.admin, timeout=120)
    assert admin.post("/services", json={"name": "acme-dummy", "url": "http://127.0.0.1:9"}).status_code == 201
    assert admin.post("/services/acme-dummy/routes", json={"paths": ["/.well-known/acme-challenge"]}).status_code == 201
    config = acme_config_for_test(pebble, "kong")
    for bad, field in (({**config, "account_email": None}, "account_email"),
                       ({**config, "api_uri": "https://acme-v02.api.letsencrypt.org/directory", "tos_accepted": False},
                        "terms of service must be accepted"),
                       ({**config, "storage": "consul"}, "storage"), ({**config, "cert_type": "dsa"}, "cert_type"),
                       ({**config, "rsa_key_size": 1024}, "rsa_key_size")):
        r = admin.post("/plugins", json={"name": "acme", "config": bad})
        assert r.status_code == 400 and field in r.text, r.text
    scoped = admin.post("/routes", json={"name": "r", "paths": ["/r"], "service": {"name": "acme-dummy"}})
    assert scoped.status_code == 201
    r = admin.post("/routes/r/plugins", json={"name": "acme", "config": config})
    assert r.status_code == 400 and r.json()["fields"]["route"] == "value must be null", r.text
    assert admin.post("/plugins", json={"name": "acme", "config": config}).status_code == 201
    assert "acme" in admin.get("/").json()["plugins"]["available_on_server"]
    time.sleep(1.5)
    # The challenge path answers for the plugin's domains (Kong's sanity check token `x`).
    check = httpx.get(f"{node.proxy}/.well-known/acme-challenge/x", headers={"Host": HOST})
    assert (check.status_code, check.text) == (404, "Not found\n")

    assert admin.post("/acme", json={"host": "evil:80"}).status_code == 400
    created = admin.post("/acme", json={"host": HOST})
    assert created.status_code == 201, created.text + pebble.log.read_text()[-3000:]
    assert created.json() == {"message": f"certificate for host {HOST} is created"}
    sni = admin.get(f"/snis/{HOST}").json()
    assert sni["tags"] == ["managed-by-acme"]
    root = pebble.root(tmp_path / "pebble-root.pem")
    for _ in range(100):  # until the workers have the new certificate entity (config poll)
        result = served_by_sni_for_test(node, root)
        if result.returncode == 0:
            break
        time.sleep(0.1)
    assert result.returncode == 0 and result.stdout == "0", result.stderr
    listed = admin.get("/acme/certificates").json()["data"]
    assert len(listed) == 1 and listed[0]["host"] == HOST and listed[0]["valid"] is True
    assert "Pebble Intermediate" in listed[0]["issuer_cn"] and listed[0]["pubkey_type"] == "id-ecPublicKey"
    assert admin.get(f"/acme/certificates/{HOST}").json()["data"]["host"] == HOST
    assert admin.get("/acme/certificates/other.test").status_code == 404
    renewing = admin.patch("/acme")
    assert renewing.status_code == 202 and renewing.json() == {"message": "Renewal process started successfully"}

    # Renewal: pebble's certificates live 5 years; a threshold of 2000 days makes this one due.
    first = listed[0]["serial_number"]
    plugin_id = admin.get("/plugins").json()["data"][0]["id"]
    assert admin.patch(f"/plugins/{plugin_id}", json={"config": {"renew_threshold_days": 2000}}).status_code == 200
    for _ in range(120):  # until the node's view has the new threshold and a renewal ran
        admin.patch("/acme")
        time.sleep(0.5)
        renewed = admin.get(f"/acme/certificates/{HOST}").json()["data"]
        if renewed["serial_number"] != first:
            break
    assert renewed["serial_number"] != first and renewed["valid"] is True
    for _ in range(240):  # a renewal started by one of the PATCHes above may still be finishing
        managed = admin.get("/certificates", params={"tags": "managed-by-acme"}).json()["data"]
        if len(managed) == 1:
            break
        time.sleep(0.5)
    assert len(managed) == 1  # each renewal deleted the certificate it replaced


def test_dbless_shm_storage_served_by_the_certificate_phase(node_factory, pebble_for_test, tmp_path):
    decl = tmp_path / "meshway.yml"
    node = node_factory(database="off", declarative_config=str(decl), workers="2")
    pebble = pebble_for_test(node.proxy_port)
    config = acme_config_for_test(pebble, "shm")
    decl.write_text(
        '_format_version: "3.0"\n'
        "services:\n- name: acme-dummy\n  url: http://127.0.0.1:9\n"
        '  routes:\n  - paths: ["/.well-known/acme-challenge"]\n'
        f"plugins:\n- name: acme\n  config: {json.dumps(config)}\n")
    (node.conf).write_text(node.conf.read_text() + f"lua_ssl_trusted_certificate = {pebble.tls['ca']}\n")
    node.start()
    bad = httpx.post(node.admin + "/config", content=decl.read_text().replace('"shm"', '"kong"'),
                     headers={"Content-Type": "text/yaml"})
    assert bad.json()["fields"] == {"plugins[0].config.storage": "\"kong\" storage can't be used with dbless mode"}
    root = pebble.root(tmp_path / "pebble-root.pem")
    # No handshake for HOST before the order: one would start an order of its own (tested below with
    # another host), and this POST would then meet it ("update_certificate ... is already running").
    assert httpx.get(node.admin + "/acme/certificates").json()["data"] == []
    created = httpx.post(node.admin + "/acme", json={"host": HOST}, timeout=120)
    assert created.status_code == 201, created.text + pebble.log.read_text()[-3000:]
    result = served_by_sni_for_test(node, root)
    assert result.returncode == 0 and result.stdout == "0", result.stderr

    # A handshake for an allowed host without a certificate gets the default one and starts an
    # order (Kong's certificate phase); later handshakes get the new certificate.
    other = "www.auto.meshway.test"
    assert served_by_sni_for_test(node, root, other).returncode != 0
    for _ in range(240):
        result = served_by_sni_for_test(node, root, other)
        if result.returncode == 0:
            break
        time.sleep(0.25)
    assert result.returncode == 0 and result.stdout == "0", result.stderr + node.error_log()[-2000:]
    listed = httpx.get(node.admin + "/acme/certificates").json()["data"]
    assert sorted(c["host"] for c in listed) == [HOST, other]
