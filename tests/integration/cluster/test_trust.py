"""Who the control plane lets in: shared certificate, pki CA, the walkthrough's openssl certificate."""
from __future__ import annotations

import ssl
import subprocess

from websockets.asyncio.client import connect

from meshway.pki import ClusterCA, gen_cluster_cert
from tests.integration.cluster.cluster_for_test import Cluster_for_test, run_for_test, wait_for_test


def _refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "meshway.cluster" and "refused data plane" in r.getMessage()]


def _dp_failures(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "connection to control plane" in r.getMessage()]


async def _intruder_for_test(port: int, cert, key) -> str:
    """A client that trusts any control plane and presents its own certificate: what an attacker runs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.load_cert_chain(cert, key)
    try:
        async with connect(f"wss://127.0.0.1:{port}/v1/outlet", ssl=ctx, proxy=None, open_timeout=5) as ws:
            await ws.recv()
    except Exception as e:
        return repr(e)
    return "connected"


def test_shared_mode_refuses_another_self_signed_certificate(tmp_path, shared_cert, cluster_log, loop_kind):
    other = tmp_path / "other.crt", tmp_path / "other.key"
    gen_cluster_cert(*other)

    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            outcome = await _intruder_for_test(c.port, *other)
            await wait_for_test(lambda: _refusals(cluster_log))
            return outcome, c.server.data_planes()
        finally:
            await c.close()

    outcome, planes = run_for_test(scenario(), loop=loop_kind)
    assert outcome != "connected" and planes == []
    [line] = _refusals(cluster_log)
    assert "TLS handshake failed" in line and "certificate verify failed" in line
    assert "cluster_mtls = shared" in line and str(shared_cert[0]) in line


def test_shared_mode_data_planes_with_different_certs_never_connect(tmp_path, shared_cert, cluster_log):
    other = tmp_path / "other.crt", tmp_path / "other.key"
    gen_cluster_cert(*other)

    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            client, applier = await c.start_dp("stranger", cert=other[0], key=other[1])
            await wait_for_test(lambda: _refusals(cluster_log) and _dp_failures(cluster_log))
            return client.connected, applier.hashes, c.server.data_planes()
        finally:
            await c.close()

    connected, applied, planes = run_for_test(scenario())
    assert not connected and applied == [] and planes == []
    assert "self-signed certificate" in _dp_failures(cluster_log)[0]
    assert "does it trust this control plane" in _refusals(cluster_log)[0]


def test_shared_mode_refuses_a_certificate_signed_by_the_shared_ca_cert(tmp_path, cluster_log):
    # The walkthrough's openssl certificate is a CA; a leaf it signed chains fine but is not it.
    ca = ClusterCA.create(tmp_path / "shared.crt", tmp_path / "shared.key")
    ca.issue(tmp_path / "child.crt", tmp_path / "child.key", "kong_clustering")

    async def scenario():
        c = Cluster_for_test(tmp_path, tmp_path / "shared.crt", tmp_path / "shared.key")
        try:
            await c.start_cp()
            outcome = await _intruder_for_test(c.port, tmp_path / "child.crt", tmp_path / "child.key")
            await wait_for_test(lambda: _refusals(cluster_log))
            return outcome, c.server.data_planes()
        finally:
            await c.close()

    outcome, planes = run_for_test(scenario())
    assert "status_code=403" in outcome and planes == []
    [line] = _refusals(cluster_log)
    assert "is not the cluster certificate" in line


def _pki(tmp_path, name: str) -> tuple[ClusterCA, dict]:
    ca = ClusterCA.create(tmp_path / f"{name}-ca.crt", tmp_path / f"{name}-ca.key")
    return ca, {"cluster_mtls": "pki", "cluster_ca_cert": str(tmp_path / f"{name}-ca.crt")}


def test_pki_mode_accepts_a_ca_issued_node_and_refuses_another_ca(tmp_path, cluster_log):
    ca, pki = _pki(tmp_path, "good")
    ca.issue(tmp_path / "cp.crt", tmp_path / "cp.key", "cp.meshway.test")
    ca.issue(tmp_path / "dp.crt", tmp_path / "dp.key", "dp1")
    rogue, _ = _pki(tmp_path, "rogue")
    rogue.issue(tmp_path / "evil.crt", tmp_path / "evil.key", "dp1")

    async def scenario():
        c = Cluster_for_test(tmp_path, tmp_path / "cp.crt", tmp_path / "cp.key", **pki)
        try:
            await c.start_cp()
            dp_settings = {**pki, "cluster_server_name": "cp.meshway.test"}
            good, applier = await c.start_dp("dp1", cert=tmp_path / "dp.crt", key=tmp_path / "dp.key", settings=dp_settings)
            outcome = await _intruder_for_test(c.port, tmp_path / "evil.crt", tmp_path / "evil.key")
            await wait_for_test(lambda: applier.hashes and _refusals(cluster_log))
            return good.node_id, outcome, [p["id"] for p in c.server.data_planes()]
        finally:
            await c.close()

    good_id, outcome, listed = run_for_test(scenario())
    assert listed == [good_id] and outcome != "connected"
    line = _refusals(cluster_log)[0]
    assert "certificate verify failed" in line and "cluster_mtls = pki" in line


def test_pki_mode_data_plane_checks_the_control_plane_name(tmp_path, cluster_log):
    ca, pki = _pki(tmp_path, "good")
    ca.issue(tmp_path / "cp.crt", tmp_path / "cp.key", "cp.meshway.test")
    ca.issue(tmp_path / "dp.crt", tmp_path / "dp.key", "dp1")

    async def scenario():
        c = Cluster_for_test(tmp_path, tmp_path / "cp.crt", tmp_path / "cp.key", **pki)
        try:
            await c.start_cp()
            client, applier = await c.start_dp("dp1", cert=tmp_path / "dp.crt", key=tmp_path / "dp.key",
                                               settings={**pki, "cluster_server_name": "other.meshway.test"})
            await wait_for_test(lambda: _dp_failures(cluster_log))
            return applier.hashes
        finally:
            await c.close()

    assert run_for_test(scenario()) == []
    assert "Hostname mismatch" in _dp_failures(cluster_log)[0] or "hostname" in _dp_failures(cluster_log)[0].lower()


def test_walkthrough_openssl_rsa4096_certificate_works_both_sides(tmp_path, cluster_log):
    # Literally the command of the Kong hybrid-mode walkthrough, then its `chmod 644 cluster.key`.
    subprocess.run(
        "openssl req -x509 -newkey rsa:4096 -keyout cluster.key -out cluster.crt -days 365 -nodes "
        "-subj '/CN=kong_clustering/'", shell=True, cwd=tmp_path, check=True, capture_output=True, timeout=60,
    )
    (tmp_path / "cluster.key").chmod(0o644)

    async def scenario():
        c = Cluster_for_test(tmp_path, tmp_path / "cluster.crt", tmp_path / "cluster.key")
        try:
            await c.start_cp()
            _, applier = await c.start_dp()
            await wait_for_test(lambda: applier.hashes == [c.source.hash])
            return c.server.data_planes()[0]["sync_status"]
        finally:
            await c.close()

    assert run_for_test(scenario()) == "normal"
    assert _refusals(cluster_log) == []
