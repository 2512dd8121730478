"""The mesh graph's live numbers in a real browser: two real `meshway dp run` data planes on
loopback, a client calling web under a bounded load; the edge client>web shows its request rate
from the data planes' own counters (as the control plane sums them), then, after a deny
permission, turns denied with a deny count, without a page reload."""
from __future__ import annotations

import sys
import threading

import httpx

from tests.helpers.node import free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import CLIENT, WEB, Cp, Dp, dps, wait_until  # noqa: F401
from tests.integration.mesh.test_mesh_permissions import ALLOW_ALL, DENY_CLIENT_TO_WEB, MTLS_ON, apply, http_status


class GuiCp(Cp):
    """The tests' mesh control plane, with its dashboard on a free loopback port."""

    def __init__(self, node_factory):  # noqa: F811
        self.dp_port, gui_port = free_port(), free_port()
        self.node = node_factory("cp", role="control_plane", proxy_listen="off",
                                 mesh_dp_listen=f"127.0.0.1:{self.dp_port}", admin_gui_listen=f"127.0.0.1:{gui_port}")
        self.node.start()
        self.gui = f"http://127.0.0.1:{gui_port}"


class Load:
    """The client app: GET /hello.txt through its outbound, at most `limit` times, until stopped."""

    def __init__(self, port: int, limit: int = 4000) -> None:
        self.port, self.limit, self.sent = port, limit, 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.sent < self.limit and not self.stopped.wait(0.05):
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/hello.txt", timeout=3)
            except httpx.HTTPError:
                pass
            self.sent += 1

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)


def _edge(page, attribute: str) -> str:
    return page.locator("svg.graph a.edge[data-edge='client>web']").get_attribute(attribute)


def test_the_graph_shows_live_traffic_on_an_edge_then_a_deny_turns_it_denied(node_factory, tmp_path, dps, page):
    cp = GuiCp(node_factory)
    apply(cp, tmp_path, MTLS_ON)
    apply(cp, tmp_path, ALLOW_ALL)
    web_port, app_port, outbound = free_port(), free_port(), free_port()
    (tmp_path / "hello.txt").write_text("hello from web\n")
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    web = Dp(cp, tmp_path, "web", WEB, "name=web", "address=127.0.0.1", f"port={web_port}", f"app_port={app_port}",
             app=app)
    dps.append(web)
    client = Dp(cp, tmp_path, "client", CLIENT, f"outbound={outbound}")
    dps.append(client)
    wait_until(lambda: web.ready() and client.ready(), what="both data planes ready")
    wait_until(lambda: http_status(outbound) == 200, timeout=30, what="web through the mesh")

    page.goto(cp.gui + "/meshes/default")
    assert _edge(page, "data-rate") == "0"  # nothing counted yet on this page
    load = Load(outbound)
    try:
        # the numbers arrive live: data planes report every 5 s, the page re-reads the graph every 2 s
        page.wait_for_function("parseFloat(document.querySelector(\"a.edge[data-edge='client>web']\")"
                               ".getAttribute('data-rate')) > 0", timeout=60_000)
        assert _edge(page, "data-verdict") == "allowed" and _edge(page, "data-denies") == "0"
        numbers = page.locator("svg.graph a.edge[data-edge='client>web'] text.numbers").text_content()
        assert numbers.endswith("/s") and float(numbers.split("/")[0]) > 0, numbers
        row = page.locator("table.edges tr[data-edge='client>web']")
        assert int(row.locator("td.calls").inner_text()) > 0
        assert float(row.locator("td.errors").inner_text()) == 0

        apply(cp, tmp_path, DENY_CLIENT_TO_WEB, "action=Deny")
        wait_until(lambda: str(http_status(outbound)).startswith("403"), timeout=30, what="client refused")
        # the client's data plane now refuses every call: once the last 15 s hold denies only, the edge is denied
        page.wait_for_function("document.querySelector(\"a.edge[data-edge='client>web']\")"
                               ".getAttribute('data-verdict') === 'denied'", timeout=90_000)
    finally:
        load.stop()
    assert load.sent < load.limit  # the load stayed bounded and was still running when the edge turned
    assert int(_edge(page, "data-denies")) > 0
    assert "denied" in page.locator("svg.graph a.edge[data-edge='client>web'] text.numbers").text_content()
    drawn = "getComputedStyle(document.querySelector(\"a.edge[data-edge='client>web'] line:not(.hit)\"))"
    assert page.evaluate(drawn + ".stroke") == "rgb(179, 38, 30)" and page.evaluate(drawn + ".strokeDasharray") != "none"
    denies = page.locator("table.edges tr[data-edge='client>web'] td.denies").inner_text()
    assert "unreachable" in denies, denies  # refused by the caller's own data plane (reachable services)
    assert page.console_errors == []
