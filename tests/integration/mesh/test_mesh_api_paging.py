"""Kuma's paging on the mesh Admin API of a real node: `size` and `offset`, `next` to follow,
`total` of the whole list; without `size` a list stays whole; a bad page is 400 on its field."""
from __future__ import annotations

import httpx

from tests.helpers.node import node_factory  # noqa: F401


def _dataplane(i: int) -> dict:
    return {"type": "Dataplane", "mesh": "default", "name": f"dp-{i}",
            "networking": {"address": "127.0.0.1", "inbound": [{"port": 20000 + i, "tags": {"kuma.io/service": "web"}}]}}


def test_pages_of_data_planes_follow_next_to_the_end(node_factory):
    node = node_factory("cp")
    node.start()
    assert httpx.put(f"{node.admin}/meshes/default", json={"type": "Mesh", "name": "default"}).status_code in (200, 201)
    for i in range(5):
        assert httpx.put(f"{node.admin}/meshes/default/dataplanes/dp-{i}", json=_dataplane(i)).status_code == 201

    for path in ("/meshes/default/dataplanes+insights", "/meshes/default/dataplanes", "/dataplanes"):
        names, url = [], f"{node.admin}{path}?size=2"
        for _ in range(5):  # bounded: 3 pages expected
            page = httpx.get(url).json()
            assert page["total"] == 5 and len(page["items"]) <= 2
            names += [item["name"] for item in page["items"]]
            if page["next"] is None:
                break
            url = page["next"]
        assert sorted(names) == [f"dp-{i}" for i in range(5)], path
    # a page's data plane carries its insight as the whole list does
    first = httpx.get(f"{node.admin}/meshes/default/dataplanes+insights?size=1&offset=4").json()
    assert [i["name"] for i in first["items"]] == ["dp-4"] and "dataplaneInsight" in first["items"][0]
    assert first["next"] is None
    assert len(httpx.get(f"{node.admin}/meshes/default/dataplanes+insights").json()["items"]) == 5  # no size: whole

    for query, field in (("size=0", "size"), ("size=many", "size"), ("size=2&offset=-1", "offset")):
        answer = httpx.get(f"{node.admin}/meshes/default/dataplanes+insights?{query}")
        assert answer.status_code == 400, query
        assert [c["field"] for c in answer.json()["causes"]] == [field], query
