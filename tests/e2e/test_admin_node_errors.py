"""Admin API endpoints that depend on the node's role answer as Kong's do on the wrong node."""
import time

import httpx

CP_ONLY = "this endpoint is only available when meshway is configured to run as Control Plane for the cluster"
DB_ONLY = "this endpoint is only available when meshway is configured to not use a database"


def test_clustering_on_a_node_that_is_not_a_control_plane_is_400(node_factory):
    node = node_factory()
    node.start()
    for path in ("/clustering/data-planes", "/clustering/status", "/clustering/metrics"):
        r = httpx.get(node.admin + path)
        assert (r.status_code, r.json()) == (400, {"message": CP_ONLY}), path
    r = httpx.post(node.admin + "/config", json={"config": "_format_version: '3.0'"})
    assert (r.status_code, r.json()) == (400, {"message": DB_ONLY})


def test_target_health_of_an_unknown_target_is_404(node_factory):
    node = node_factory()
    node.start()
    assert httpx.post(node.admin + "/upstreams", json={"name": "up.test"}).status_code == 201
    target = httpx.post(node.admin + "/upstreams/up.test/targets", json={"target": "127.0.0.1:9"}).json()
    for key in ("127.0.0.2:9", "nope", "00000000-0000-4000-8000-000000000000"):
        r = httpx.put(node.admin + f"/upstreams/up.test/targets/{key}/unhealthy")
        assert (r.status_code, r.json()) == (404, {"message": "Not found"}), key
    assert httpx.put(node.admin + "/upstreams/nope.test/targets/127.0.0.1:9/unhealthy").status_code == 404
    deadline = time.monotonic() + 5
    while (r := httpx.put(node.admin + f"/upstreams/up.test/targets/{target['id']}/unhealthy")).status_code == 404:
        assert time.monotonic() < deadline, r.text  # the node's config catches up with the write
        time.sleep(0.05)
    assert r.status_code == 204
    health = httpx.get(node.admin + "/upstreams/up.test/health").json()
    assert [t["health"] for t in health["data"]] == ["UNHEALTHY"], health
