"""TLS policy of proxy listeners: AEAD-only TLS 1.2 suites (Mozilla "intermediate"), and
generated default certificates valid one year, renewed near expiry."""
from __future__ import annotations

import datetime
import socket
import ssl
import subprocess

import pytest
from cryptography import x509

from meshway.node._prefix import default_certificate, self_signed
from tests.integration.proxy.proxy_for_test import Origin, WorkerProcess, pass_through_snapshot_for_test


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def worker(origin, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("tlspolicy")
    (prefix / "ssl").mkdir()
    crt, key = default_certificate(prefix)  # what `meshway start` generates for the proxy
    w = WorkerProcess(pass_through_snapshot_for_test(port=origin.port), prefix, listen=["127.0.0.1:0 ssl"],
                      env={"MESHWAY_SSL_CERT": str(crt), "MESHWAY_SSL_CERT_KEY": str(key)})
    yield w
    w.stop()


def _s_client(port: int, *args: str) -> str:
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                          input=b"", capture_output=True, timeout=20)
    return (proc.stdout + proc.stderr).decode(errors="replace")


@pytest.mark.parametrize("suite", ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256"])
def test_tls12_cbc_suites_are_refused(worker, suite):
    out = _s_client(worker.port, "-tls1_2", "-cipher", suite)
    assert "no peer certificate available" in out and "Cipher is (NONE)" in out, out[-600:]  # no handshake
    assert f"Cipher is {suite}" not in out


def test_tls12_aead_suite_is_chosen(worker):
    out = _s_client(worker.port, "-tls1_2")
    chosen = out.split("Cipher is ", 1)[1].split()[0]
    assert chosen.startswith("ECDHE-ECDSA-") and ("GCM" in chosen or "CHACHA20" in chosen), out[-600:]


def test_python_client_offering_only_cbc_cannot_connect(worker):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:AES128-SHA")
    with socket.create_connection(("127.0.0.1", worker.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="localhost")


def test_generated_default_certificate_is_valid_one_year(worker):
    cert = x509.load_pem_x509_certificate((worker.prefix / "ssl" / "default.crt").read_bytes())
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 364 <= days <= 366
    served = ssl.get_server_certificate(("127.0.0.1", worker.port))
    assert x509.load_pem_x509_certificate(served.encode()) == cert


def test_generated_default_certificate_near_expiry_is_renewed(tmp_path):
    (tmp_path / "ssl").mkdir()
    old_pem, old_key = self_signed("meshway-default", days=10)
    (tmp_path / "ssl" / "default.crt").write_bytes(old_pem)
    (tmp_path / "ssl" / "default.key").write_bytes(old_key)
    crt, _ = default_certificate(tmp_path)
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) > datetime.timedelta(days=300)
    again, _ = default_certificate(tmp_path)  # a fresh one is kept
    assert again.read_bytes() == crt.read_bytes()
