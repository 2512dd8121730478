"""db_export / db_import and the declarative document carry the mesh: Mesh, Dataplane, MeshTrafficPermission."""
from __future__ import annotations

import pytest
import yaml

from meshway.mesh._resources import parse_resource
from meshway.model import DeclarativeError, parse_declarative, to_declarative
from meshway.store import db_export, db_import

DATAPLANE = {"type": "Dataplane", "mesh": "default", "name": "web-1",
             "networking": {"address": "127.0.0.1",
                            "inbound": [{"port": 8080, "servicePort": 18080,
                                         "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http"}}],
                            "transparentProxying": {"redirectPortInbound": 15006, "redirectPortOutbound": 15001}}}
PERMISSION = {"type": "MeshTrafficPermission", "mesh": "default", "name": "allow-client",
              "spec": {"targetRef": {"kind": "Mesh"},
                       "from": [{"targetRef": {"kind": "MeshService", "name": "client"},
                                 "default": {"action": "Allow"}}]}}


def _mesh_rows(store) -> dict:
    section = store.export_snapshot()["mesh_resources"]
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("Time")} for r in rows]  # noqa: E731
    return {k: strip(section[k]) for k in ("meshes", "dataplanes", "policies")}


def test_round_trip_keeps_the_mesh(store, tmp_path):
    store.mesh.put(parse_resource({"type": "Mesh", "name": "default", "mtls": {
        "enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}))
    store.mesh.put(parse_resource({"type": "Mesh", "name": "other"}))
    store.mesh.put(parse_resource(DATAPLANE))
    store.mesh.put(parse_resource(PERMISSION))
    store.insert("services", {"name": "svc", "host": "svc.test"})
    before, vips = _mesh_rows(store), store.export_snapshot()["mesh_resources"]["vips"]
    path = tmp_path / "meshway.yml"
    db_export(store, path)
    document = yaml.safe_load(path.read_text())
    assert [(r["type"], r["name"]) for r in document["mesh_resources"]] == [
        ("Mesh", "default"), ("Mesh", "other"), ("Dataplane", "web-1"), ("MeshTrafficPermission", "allow-client")]
    store.reset()
    store.bootstrap()
    db_import(store, path)
    assert _mesh_rows(store) == before
    assert store.export_snapshot()["mesh_resources"]["vips"] == vips
    assert store.get("services", "svc")["host"] == "svc.test"


def test_a_kong_file_leaves_the_mesh_alone_and_exports_as_kong(store, tmp_path):
    store.mesh.put(parse_resource(DATAPLANE))
    path = tmp_path / "kong.yml"
    path.write_text("_format_version: '3.0'\nservices:\n- name: svc\n  host: svc.test\n")
    db_import(store, path)
    assert [d["name"] for d in _mesh_rows(store)["dataplanes"]] == ["web-1"]
    store.mesh.delete("Dataplane", "default", "web-1")
    assert "mesh_resources" not in to_declarative(store.export_snapshot())  # only the default mesh: Kong's file


def test_bad_mesh_resources_name_the_field_and_change_nothing(store, tmp_path):
    store.mesh.put(parse_resource(DATAPLANE))
    before = _mesh_rows(store)
    bad = {"_format_version": "3.0", "mesh_resources": [
        {"type": "Mesh", "name": "default"},
        {**DATAPLANE, "networking": {"address": "127.0.0.1", "inbound": [{"port": 8080, "tags": {}}]}},
        {"type": "Dataplane", "mesh": "nowhere", "name": "x",
         "networking": {"address": "127.0.0.1", "inbound": [{"port": 1, "tags": {"kuma.io/service": "x"}}]}}]}
    with pytest.raises(DeclarativeError) as caught:
        parse_declarative(bad)
    fields = caught.value.fields if hasattr(caught.value, "fields") else str(caught.value)
    assert "mesh_resources[1]" in str(fields) and "kuma.io/service" in str(fields)
    assert "mesh_resources[2].mesh" in str(fields)
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(DeclarativeError):
        db_import(store, path)
    assert _mesh_rows(store) == before
