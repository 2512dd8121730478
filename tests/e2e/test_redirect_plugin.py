"""redirect end to end through a real node: Location and status as configured, the incoming path
and query kept on request (the body is the node's `redirecting`), routes without the plugin proxied."""
from __future__ import annotations

import httpx

from tests.e2e.test_socket_log_plugins import OriginForTest


def test_redirects_with_and_without_the_incoming_path(node_factory):
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    origin = OriginForTest()
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    for name in ("moved", "kept", "open"):
        assert admin.post("/services/s/routes", json={"name": name, "paths": [f"/{name}"]}).status_code == 201
    bad = admin.post("/plugins", json={"name": "redirect", "config": {"location": "not-a-url"}})
    assert bad.status_code == 400 and "location" in bad.json()["fields"]["config"], bad.text
    assert admin.post("/routes/moved/plugins", json={"name": "redirect", "config": {
        "location": "https://new.example.test/landing"}}).status_code == 201
    assert admin.post("/routes/kept/plugins", json={"name": "redirect", "config": {
        "location": "https://new.example.test:8443/ignored?x=1#top", "status_code": 308,
        "keep_incoming_path": True}}).status_code == 201
    assert "redirect" in admin.get("/").json()["plugins"]["available_on_server"]
    with httpx.Client(follow_redirects=False) as client:
        moved = client.get(f"{node.proxy}/moved/a?b=c")
        assert (moved.status_code, moved.headers["location"], moved.text) == (
            301, "https://new.example.test/landing", "redirecting")
        kept = client.post(f"{node.proxy}/kept/a/b?q=1&r=2", content=b"body")
        assert (kept.status_code, kept.headers["location"]) == (308, "https://new.example.test:8443/kept/a/b?q=1&r=2#top")
        bare = client.get(f"{node.proxy}/kept")
        assert bare.headers["location"] == "https://new.example.test:8443/kept#top"
        assert client.get(f"{node.proxy}/open").text == "ok"  # no plugin: proxied
