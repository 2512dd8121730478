"""Mesh over the real cluster channel: membership in pushed snapshots, CSR -> node certificate, renewal."""
from __future__ import annotations

from cryptography import x509

from meshway.mesh import spiffe_ids
from tests.integration.cluster.cluster_for_test import Cluster_for_test, run_for_test, wait_for_test


def test_a_sidecar_joining_and_leaving_changes_what_every_data_plane_gets(tmp_path, shared_cert):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            _, watcher = await c.start_dp("a")
            await wait_for_test(lambda: watcher.hashes == [c.source.hash])  # nobody fronts anything yet
            b, b_applier = await c.start_dp("b", settings={"mesh_inbound": "127.0.0.5, 10.0.0.0/8"})
            await wait_for_test(lambda: len(watcher.hashes) == 2 and b_applier.hashes)
            joined, b_first = watcher.calls[-1], b_applier.calls[0]
            await b.stop()
            await wait_for_test(lambda: len(watcher.hashes) == 3)
            return c.source.hash, b.node_id, joined, b_first, watcher.calls[-1]
        finally:
            await c.close()

    plain_hash, b_id, joined, b_first, left = run_for_test(scenario())
    expected = {"endpoints": [{"node_id": b_id, "inbound": ["127.0.0.5", "10.0.0.0/8"]}]}
    assert joined[0]["mesh"] == expected and joined[1] != plain_hash
    assert b_first == joined  # the joiner's very first config already lists it
    assert "mesh" not in left[0] and left[1] == plain_hash


def test_a_data_plane_gets_a_node_certificate_from_the_cp_ca_and_renews_it(tmp_path, shared_cert):
    identities = []

    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp(mesh_cert_hours=3 / 3600)  # 3 s: renewal due after 2 s
            client, _ = await c.start_dp("dp1", on_identity=identities.append)
            await wait_for_test(lambda: len(identities) >= 2, timeout=8)
            return client.node_id, client.connected
        finally:
            await c.close()

    node_id, still_connected = run_for_test(scenario())
    first, second = identities[:2]
    assert first["serial"] != second["serial"] and first["cert_path"] == second["cert_path"]
    assert still_connected  # renewal does not reconnect
    ca = x509.load_pem_x509_certificate((tmp_path / "cp" / "mesh" / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate(open(second["cert_path"], "rb").read())
    cert.verify_directly_issued_by(ca)
    assert spiffe_ids(cert) == [f"spiffe://meshway/node/{node_id}"] == [second["spiffe_id"]]
    assert open(second["ca_path"], "rb").read() == (tmp_path / "cp" / "mesh" / "ca.crt").read_bytes()


def test_mesh_off_sends_no_csr_and_no_inbound(tmp_path, shared_cert, caplog):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            client, applier = await c.start_dp("dp1", settings={"mesh_mtls": "off", "mesh_inbound": "127.0.0.5"})
            await wait_for_test(lambda: applier.hashes)
            return applier.calls[0], client.mesh_identity
        finally:
            await c.close()

    (snapshot, _), identity = run_for_test(scenario())
    assert "mesh" not in snapshot and identity is None
    assert not (tmp_path / "dp1" / "mesh").exists()
