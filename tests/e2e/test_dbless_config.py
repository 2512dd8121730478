"""DB-less: POST /config swaps the whole config; an invalid one is refused and nothing changes."""
import httpx

from tests.e2e.test_node_lifecycle import _declarative, _origin_for_test


def test_post_config_swaps_and_rejects(node_factory):
    origin = _origin_for_test()
    node = node_factory(database="off")
    node.start()
    try:
        assert httpx.get(node.proxy + "/a/x").status_code == 404
        ok = httpx.post(node.admin + "/config", json={"config": _declarative(origin.port, "/a")})
        assert ok.status_code == 201, ok.text
        assert httpx.get(node.proxy + "/a/x").text == "origin saw /x"
        bad = _declarative(origin.port, "/b").replace('paths: ["/b"]', 'paths: ["b"]')
        refused = httpx.post(node.admin + "/config", json={"config": bad})
        assert refused.status_code == 400
        body = refused.json()
        assert body["name"] == "invalid declarative configuration", body
        assert "services[0].routes[0].paths[0]" in str(body["fields"]), body
        assert httpx.get(node.proxy + "/a/x").status_code == 200  # the previous config keeps serving
        exported = httpx.get(node.admin + "/config").json()
        assert "/a" in exported["config"]
        assert httpx.post(node.admin + "/services", json={"name": "x", "host": "h"}).status_code == 405
    finally:
        origin.stop()
