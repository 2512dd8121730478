"""The worker's mesh decisions: who is upgraded, what is terminated, what strict mode refuses."""
from __future__ import annotations

import dataclasses
import ssl
import types

import pytest

from meshway.mesh import (
    MESH_ALPN, MESH_OFF, MeshCA, NodeIdentity, compile_endpoints, compile_mesh, is_mesh_sni, worker_snapshot,
)

NODE = "6f1c2d3e-0000-4000-8000-000000000002"
B_ONLY = {"endpoints": [{"node_id": "node-b", "inbound": ["127.0.0.5"]}]}


def settings_for_test(tmp_path, **values):
    base = {"mesh_mtls": "permissive", "mesh_inbound": (), "origins": (), "prefix": str(tmp_path)}
    return types.SimpleNamespace(**{**base, **values})


@pytest.fixture
def identity(tmp_path):
    ca = MeshCA.load_or_create(tmp_path / "ca")
    node = NodeIdentity(tmp_path / "dp", NODE)
    creds = node.install(ca.sign(node.csr(), NODE, "h"), ca.cert_pem)
    return {**creds.as_dict(), "node_id": NODE}


def test_a_sender_upgrades_hops_to_other_sidecars_only(tmp_path, identity):
    snap, _ = worker_snapshot({"mesh": B_ONLY}, "h", identity)
    mesh = compile_mesh(snap, settings_for_test(tmp_path))
    assert mesh.upgrades("127.0.0.5", 19000) and not mesh.upgrades("127.0.0.6", 19000)
    assert isinstance(mesh.client_ctx, ssl.SSLContext) and mesh.client_ctx.verify_mode == ssl.CERT_REQUIRED
    assert mesh.spiffe_id == f"spiffe://meshway/node/{NODE}"
    assert mesh.dials  # the proxy asks `upgrades` per request only where this is true


def test_without_a_certificate_or_with_mesh_off_nothing_is_upgraded(tmp_path, identity):
    uncertified = compile_mesh({"mesh": B_ONLY}, settings_for_test(tmp_path))
    assert not uncertified.upgrades("127.0.0.5", 1) and not uncertified.dials
    snap, _ = worker_snapshot({"mesh": B_ONLY}, "h", identity)
    off = compile_mesh(snap, settings_for_test(tmp_path, mesh_mtls="off"))
    assert not off.upgrades("127.0.0.5", 1) and not off.wants_preread("127.0.0.5", 1) and not off.dials
    alone = compile_mesh(worker_snapshot({"mesh": {"endpoints": []}}, "h", identity)[0], settings_for_test(tmp_path))
    assert alone.client_ctx is not None and not alone.dials  # no other sidecar: no hop to upgrade


def test_a_receiver_prereads_only_what_it_fronts(tmp_path, identity):
    snap, _ = worker_snapshot({"mesh": {"endpoints": [{"node_id": NODE, "inbound": ["127.0.0.5"]}]}}, "h", identity)
    mesh = compile_mesh(snap, settings_for_test(tmp_path, mesh_inbound=("127.0.0.5",)))
    assert mesh.wants_preread("127.0.0.5", 19000) and not mesh.wants_preread("127.0.0.6", 19000)
    assert not mesh.upgrades("127.0.0.5", 19000)  # its own service is reached in the clear
    assert mesh.server_ctx.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("mode, src, dst, admitted", [
    ("permissive", "127.0.0.9", "127.0.0.5", True),
    ("strict", "127.0.0.9", "127.0.0.5", False),
    ("strict", "127.0.0.5", "127.0.0.5", True),  # the fronted service's own traffic
    ("strict", "127.0.0.9", "127.0.0.7", True),  # not a destination this sidecar fronts
])
def test_strict_mode_refuses_plain_connections_to_fronted_destinations(mode, src, dst, admitted):
    mesh = dataclasses.replace(MESH_OFF, mode=mode, own=compile_endpoints(["127.0.0.5"]))
    assert mesh.admits_plain(src, dst, 19000) is admitted


def test_the_mesh_is_recognised_by_its_sni():
    assert is_mesh_sni("sidecar.mesh.meshway") and is_mesh_sni("mesh.meshway")
    assert not is_mesh_sni(None) and not is_mesh_sni("example.com") and not is_mesh_sni("evilmesh.meshway")
    assert MESH_ALPN == "meshway-mesh/1"


def test_a_new_certificate_gives_the_workers_a_new_hash(identity):
    same = worker_snapshot({"services": []}, "h", None)
    first = worker_snapshot({"services": []}, "h", identity)
    renewed = worker_snapshot({"services": []}, "h", {**identity, "serial": "beef"})
    assert same == ({"services": []}, "h")
    assert first[0]["mesh"]["identity"]["node_id"] == NODE
    assert len({"h", first[1], renewed[1]}) == 3


def test_unloadable_identity_files_reject_the_config(tmp_path, identity):
    snap, _ = worker_snapshot({"mesh": B_ONLY}, "h", {**identity, "cert_path": str(tmp_path / "missing.crt")})
    with pytest.raises(ValueError, match="mesh identity"):
        compile_mesh(snap, settings_for_test(tmp_path))
