"""Cluster certificates: generation, the CA, and the errors a user sees when files are wrong."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshway.pki import ClusterCA, ClusterCertError, gen_cluster_cert, issue_cert, load_cluster_credentials
from meshway.settings import load_settings


def _settings(tmp: Path, cert: Path | str, key: Path | str, **kw: str):
    return load_settings(env={}, overrides={"prefix": str(tmp), "cluster_cert": str(cert),
                                            "cluster_cert_key": str(key), **kw})


@pytest.fixture
def pair(tmp_path):
    cert, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
    gen_cluster_cert(cert, key)
    return cert, key


def test_gen_cert_is_ecdsa_p384_self_signed_with_private_key(pair):
    cert_path, key_path = pair
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp384r1"
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=meshway_clustering"
    assert 1090 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 1096
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_gen_cert_refuses_to_overwrite_unless_forced(pair):
    cert_path, key_path = pair
    before = cert_path.read_bytes()
    with pytest.raises(FileExistsError, match="already exist"):
        gen_cluster_cert(cert_path, key_path)
    assert cert_path.read_bytes() == before
    gen_cluster_cert(cert_path, key_path, force=True, common_name="other", days=10)
    assert cert_path.read_bytes() != before


def test_load_good_pair(tmp_path, pair):
    creds = load_cluster_credentials(_settings(tmp_path, *pair))
    assert creds.mode == "shared" and creds.pair == (str(pair[0]), str(pair[1])) and len(creds.fingerprint) == 64


def test_relative_paths_are_under_the_prefix(tmp_path, pair):
    assert load_cluster_credentials(_settings(tmp_path, "cluster.crt", "cluster.key")).cert_path == pair[0]


def test_missing_setting_and_file(tmp_path, pair):
    with pytest.raises(ClusterCertError, match="cluster_cert is not set.*meshway hybrid gen-cert"):
        load_cluster_credentials(_settings(tmp_path, "", pair[1]))
    with pytest.raises(ClusterCertError, match=f"cluster_cert_key: file {tmp_path}/nope.key not found"):
        load_cluster_credentials(_settings(tmp_path, pair[0], tmp_path / "nope.key"))


def test_not_pem(tmp_path, pair):
    (tmp_path / "junk").write_text("hello")
    with pytest.raises(ClusterCertError, match="cluster_cert: .*junk is not a PEM certificate"):
        load_cluster_credentials(_settings(tmp_path, tmp_path / "junk", pair[1]))
    with pytest.raises(ClusterCertError, match="cluster_cert_key: .*cluster.crt is not a PEM private key"):
        load_cluster_credentials(_settings(tmp_path, pair[0], pair[0]))


def test_cert_and_key_mismatch(tmp_path, pair):
    gen_cluster_cert(tmp_path / "b.crt", tmp_path / "b.key")
    with pytest.raises(ClusterCertError, match="do not match"):
        load_cluster_credentials(_settings(tmp_path, pair[0], tmp_path / "b.key"))


def test_encrypted_key(tmp_path, pair):
    key = serialization.load_pem_private_key(pair[1].read_bytes(), None)
    enc = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"pw"))
    (tmp_path / "enc.key").write_bytes(enc)
    with pytest.raises(ClusterCertError, match="is encrypted"):
        load_cluster_credentials(_settings(tmp_path, pair[0], tmp_path / "enc.key"))


def _message_as_nobody(settings) -> str:
    """load_cluster_credentials in a forked child running as uid/gid 65534: a real permission check."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.setgid(65534)
            os.setuid(65534)
            load_cluster_credentials(settings)
            os.write(write_end, b"loaded")
        except BaseException as e:
            os.write(write_end, str(e).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        message = f.read().decode()
    os.waitpid(pid, 0)
    return message


def test_unreadable_key_says_which_file_which_user_and_the_chmod():
    # The walkthrough's failure: openssl writes the key 0600 for its creator; another user runs the node.
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        cert, key = Path(tmp) / "cluster.crt", Path(tmp) / "cluster.key"
        gen_cluster_cert(cert, key)
        if os.geteuid() == 0:  # root reads anything: ask as an unprivileged user, for real
            message, user = _message_as_nobody(_settings(Path(tmp), cert, key)), "nobody"
        else:
            key.chmod(0o000)
            with pytest.raises(ClusterCertError) as e:
                load_cluster_credentials(_settings(Path(tmp), cert, key))
            message, user = str(e.value), None
    assert f"cluster_cert_key: cannot read {key}" in message, message
    assert "permission denied" in message and f"chmod" in message and str(key) in message
    if user:
        assert f"as user '{user}'" in message and f"`chmod 644 {key}`" in message


def test_ca_issues_certificates_that_chain(tmp_path):
    ca = ClusterCA.create(tmp_path / "ca.crt", tmp_path / "ca.key")
    issue_cert(tmp_path / "ca.crt", tmp_path / "ca.key", tmp_path / "dp.crt", tmp_path / "dp.key", "dp-1")
    leaf = x509.load_pem_x509_certificate((tmp_path / "dp.crt").read_bytes())
    leaf.verify_directly_issued_by(ca.cert)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["dp-1"]
    assert stat.S_IMODE((tmp_path / "dp.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    creds = load_cluster_credentials(_settings(tmp_path, tmp_path / "dp.crt", tmp_path / "dp.key",
                                               cluster_mtls="pki", cluster_ca_cert=str(tmp_path / "ca.crt")))
    assert creds.mode == "pki" and creds.ca_pem


def test_pki_mode_errors(tmp_path, pair):
    with pytest.raises(ClusterCertError, match="cluster_mtls = pki needs cluster_ca_cert"):
        load_cluster_credentials(_settings(tmp_path, *pair, cluster_mtls="pki"))
    ClusterCA.create(tmp_path / "ca.crt", tmp_path / "ca.key")
    with pytest.raises(ClusterCertError, match="is not issued by cluster_ca_cert"):
        load_cluster_credentials(_settings(tmp_path, *pair, cluster_mtls="pki", cluster_ca_cert=str(tmp_path / "ca.crt")))
