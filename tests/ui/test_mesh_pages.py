"""The mesh pages in a real browser: the service graph's edges decided as the data planes decide
them, a denied edge after a deny permission, and `meshway explain` behind each edge."""
from __future__ import annotations

import httpx

MESH = {"type": "Mesh", "name": "default",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}


def _dataplane(name: str, service: str, port: int, outbound_to: str | None = None) -> dict:
    networking = {"address": "127.0.0.1", "inbound": [{"port": port, "tags": {"kuma.io/service": service}}]}
    if outbound_to:
        networking["outbound"] = [{"port": port + 1000, "tags": {"kuma.io/service": outbound_to}}]
    return {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}


def _permission(name: str, source: str, action: str) -> dict:
    return {"type": "MeshTrafficPermission", "mesh": "default", "name": name,
            "spec": {"targetRef": {"kind": "Mesh"},
                     "from": [{"targetRef": {"kind": "MeshService", "name": source} if source != "*" else {"kind": "Mesh"},
                               "default": {"action": action}}]}}


def _put(node, path: str, body: dict) -> None:
    answer = httpx.put(node.admin + path, json=body)
    assert answer.status_code in (200, 201), answer.text


def test_the_graph_draws_a_denied_edge_after_a_deny_permission_and_explains_it(gui_node, page):
    node = gui_node()
    node.start()
    _put(node, "/meshes/default", MESH)
    _put(node, "/meshes/default/dataplanes/web-1", _dataplane("web-1", "web", 20001))
    _put(node, "/meshes/default/dataplanes/client-1", _dataplane("client-1", "client", 20002, outbound_to="web"))
    _put(node, "/meshes/default/meshtrafficpermissions/allow-all", _permission("allow-all", "*", "Allow"))

    page.goto(node.gui + "/meshes")
    page.get_by_role("link", name="default").click()
    page.wait_for_load_state()
    edge = page.locator("svg.graph a.edge[data-edge='client>web']")
    assert edge.get_attribute("data-verdict") == "allowed"
    assert page.locator("svg.graph g.node").count() == 2
    assert page.locator("table.services tr[data-service=web]").inner_text().startswith("web")

    _put(node, "/meshes/default/meshtrafficpermissions/z-deny-client",
         {**_permission("z-deny-client", "client", "Deny"),
          "spec": {"targetRef": {"kind": "MeshService", "name": "web"},
                   "from": [{"targetRef": {"kind": "MeshService", "name": "client"}, "default": {"action": "Deny"}}]}})
    page.reload()
    edge = page.locator("svg.graph a.edge[data-edge='client>web']")
    assert edge.get_attribute("data-verdict") == "denied"
    drawn = "getComputedStyle(document.querySelector(\"a.edge[data-edge='client>web'] line:not(.hit)\"))"
    assert page.evaluate(drawn + ".strokeDasharray") != "none"  # dashed,
    assert page.evaluate(drawn + ".stroke") == "rgb(179, 38, 30)"  # and red
    edge.locator("line.hit").click(force=True)
    explained = page.locator("pre.explain").inner_text()
    assert "source: dataplane client-1" in explained
    # what `meshway explain client web` says: with mTLS on, the deny leaves web out of client's reachable services
    assert "REFUSED by the source's data plane: service web is not among its reachable services" in explained
    assert "ALLOWED" not in explained
    assert page.locator("table.permissions tr[data-permission=z-deny-client]").count() == 1
    assert page.console_errors == []


def test_the_mesh_page_lists_gateways_and_zones(gui_node, page):
    node = gui_node()
    node.start()
    _put(node, "/meshes/default", {"type": "Mesh", "name": "default"})
    _put(node, "/meshes/default/dataplanes/edge-1", {
        "type": "Dataplane", "mesh": "default", "name": "edge-1",
        "networking": {"address": "127.0.0.1", "gateway": {"tags": {"kuma.io/service": "edge"}}}})
    page.goto(node.gui + "/meshes/default")
    gateway = page.locator("table.gateways tr[data-gateway=edge-1]")
    assert "DELEGATED" in gateway.inner_text() and "edge" in gateway.inner_text()
    assert gateway.get_attribute("data-status") == "Offline"  # registered, never connected
    zone = page.locator("table.zones tr[data-zone=dc1]")
    assert "this control plane" in zone.inner_text()
    assert page.console_errors == []


def test_an_inbound_that_is_not_ready_is_flagged_on_the_data_planes_page(gui_node, page):
    node = gui_node()
    node.start()
    _put(node, "/meshes/default", {"type": "Mesh", "name": "default"})
    _put(node, "/meshes/default/dataplanes/api-1", {
        "type": "Dataplane", "mesh": "default", "name": "api-1", "networking": {"address": "127.0.0.1", "inbound": [
            {"port": 21001, "tags": {"kuma.io/service": "api"}},
            {"port": 21002, "tags": {"kuma.io/service": "admin"}, "health": {"ready": False}}]}})
    page.goto(node.gui + "/data-planes?q=api-1")
    row = page.locator("table.dataplanes tbody tr[data-name=api-1]")
    assert row.locator(".chip.warn").inner_text() == "admin:21002 not ready"
    assert row.locator(".chip:not(.warn)").inner_text() == "api:21001"
    assert "inbound[port=21002,svc=admin] is not ready" in row.locator("td.status").get_attribute("title")
    assert page.console_errors == []
