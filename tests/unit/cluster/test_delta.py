"""The resources of a snapshot, deltas between versions, and the data plane's side of them (`_delta`)."""
from __future__ import annotations

import copy
import json
import random
import zlib

import pytest

from meshway.cluster import _delta


def _snapshot(dps: int = 6) -> dict:
    return {"_format_version": "3.0", "services": [{"id": "b", "name": "x"}, {"id": "a", "name": "y"}], "routes": [],
            "mesh_resources": {"meshes": [{"type": "Mesh", "name": "default"}],
                               "dataplanes": [{"type": "Dataplane", "mesh": "default", "name": f"dp{i}"}
                                              for i in range(dps)],
                               "policies": [], "vips": {"default": {"web": "240.0.0.1"}}},
            "config_entries": [{"Kind": "service-defaults", "Name": "web"}], "zones": {},
            "tags": ["same", "same"]}


def _whole(snapshot: dict) -> dict:
    return json.loads(_delta.assemble(_delta.texts(_delta.resources(snapshot))))


def test_resources_are_named_by_identity_and_assembled_in_canonical_order():
    named = _delta.resources(_snapshot())
    assert named[("services", "a")] == {"id": "a", "name": "y"}
    assert named[("mesh_resources.dataplanes", "default", "dp3", "Dataplane")]["name"] == "dp3"
    assert named[("mesh_resources.vips", "default")] == {"web": "240.0.0.1"}
    assert named[("config_entries", "service-defaults", "web")] == {"Kind": "service-defaults", "Name": "web"}
    assert named[("tags",)] == ["same", "same"]  # no unique identity: one resource
    whole = _whole(_snapshot())
    assert [s["id"] for s in whole["services"]] == ["a", "b"]  # sorted by identity
    assert {k: v for k, v in whole.items() if k != "services"} == \
        {k: v for k, v in _snapshot().items() if k != "services"}


def test_a_delta_applied_gives_the_same_document_as_the_whole_new_version():
    rng = random.Random(7)
    old = _snapshot(40)
    versions = _delta.Versions().next(old, "v0")
    dp = _delta.Applied()
    dp.commit("v0", _delta.texts(_delta.resources(old)))
    new = old
    for step in range(1, 6):
        new = copy.deepcopy(new)
        dps = new["mesh_resources"]["dataplanes"]
        dps.pop(rng.randrange(len(dps)))
        dps.append({"type": "Dataplane", "mesh": "default", "name": f"new{step}"})
        new["services"][0]["name"] = f"x{step}"
        versions = versions.next(new, f"v{step}")
    frame, put, removed = versions.frame("v0")
    body = json.loads(zlib.decompress(frame))
    assert body["type"] == "reconfigure_delta" and body["base_hash"] == "v0" and body["config_hash"] == "v5"
    assert (put, removed) == (6, 5)  # 5 new data planes and a service; 5 removed
    named = dp.delta("v0", *_delta.check_delta(body))
    assert json.loads(_delta.assemble(named)) == _whole(new)
    assert versions.frame("v3")[1:] == (3, 2)  # from a later version: less
    assert versions.frame("v0")[0] is frame  # made once per base


def test_unknown_or_forgotten_versions_and_big_deltas_get_the_whole_configuration():
    snap = _snapshot(40)
    versions = _delta.Versions().next(snap, "v0")
    for step in range(1, _delta.HISTORY + 2):
        snap = copy.deepcopy(snap)
        snap["services"][0]["name"] = f"x{step}"
        versions = versions.next(snap, f"v{step}")
    assert versions.frame("never") is None
    assert versions.frame("v0") is None  # more than HISTORY versions ago
    assert versions.frame("v1") is not None
    big = copy.deepcopy(snap)
    big["mesh_resources"]["dataplanes"] = [{"type": "Dataplane", "mesh": "other", "name": f"z{i}"} for i in range(40)]
    assert versions.next(big, "big").frame(versions.hash) is None  # most of it changed


def test_the_data_plane_applies_a_delta_only_onto_its_base():
    dp = _delta.Applied()
    with pytest.raises(LookupError, match="runs nothing, not v1"):
        dp.delta("v1", {}, [])
    dp.commit("v2", _delta.texts(_delta.resources(_snapshot())))
    with pytest.raises(LookupError, match="runs v2, not v1"):
        dp.delta("v1", {}, [])


@pytest.mark.parametrize("body, error", [
    ({"put": [], "removed": []}, "base_hash"),
    ({"base_hash": "v", "put": {}, "removed": []}, "put and removed arrays"),
    ({"base_hash": "v", "put": [[["services"]]], "removed": []}, "each put entry is"),
    ({"base_hash": "v", "put": [[[], {}]], "removed": []}, "non-empty array of strings"),
    ({"base_hash": "v", "put": [], "removed": [[1]]}, "non-empty array of strings"),
])
def test_a_malformed_delta_is_refused_with_the_reason(body, error):
    with pytest.raises(ValueError, match=error):
        _delta.check_delta(body)
