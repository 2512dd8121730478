"""A `meshway dp run` data plane keeps the zone's config entries in the snapshot its workers compile."""
from __future__ import annotations

from meshway.mesh._translate import dataplane_snapshot
from meshway.proxy import compile_runtime
from meshway.settings import load_settings
from meshway.zones import check_entry

RESOLVER = check_entry({"kind": "service-resolver", "name": "api", "redirect": {"service": "api", "datacenter": "cloud"}})
CLIENT = {"type": "Dataplane", "mesh": "default", "name": "web-1",
          "networking": {"address": "10.5.0.10", "inbound": [{"port": 9090, "tags": {"kuma.io/service": "web"}}]}}


def test_config_entries_are_in_the_data_planes_view_and_compile():
    snapshot = {"mesh_resources": {"meshes": [{"type": "Mesh", "name": "default"}], "dataplanes": [CLIENT],
                                   "vips": {"default": {}}},
                "config_entries": [RESOLVER]}
    view = dataplane_snapshot(snapshot, "default", "web-1")
    assert view["config_entries"] == [RESOLVER]
    compile_runtime(view, load_settings(env={}))  # the workers take the view as it is
    assert dataplane_snapshot({"mesh_resources": snapshot["mesh_resources"]}, "default", "web-1")["config_entries"] == []
