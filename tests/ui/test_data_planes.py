"""The data planes page in a real browser: a hybrid data plane of a real control plane, then killed."""
from __future__ import annotations

import os
import signal
import time

import httpx

from tests.helpers.node import free_port, run_cli_for_test
from tests.integration.mesh.test_dp_run import dps  # noqa: F401  (fixture: kills what it started)


def _hybrid_pair(gui_node, node_factory, tmp_path):
    cert = (str(tmp_path / "cluster.crt"), str(tmp_path / "cluster.key"))
    assert run_cli_for_test("hybrid", "gen-cert", *cert).returncode == 0
    cluster = free_port()
    cp = gui_node("cp", role="control_plane", proxy_listen="off", cluster_listen=f"127.0.0.1:{cluster}",
                  cluster_cert=cert[0], cluster_cert_key=cert[1], cluster_data_plane_heartbeat="1")
    cp.start()
    dp = node_factory("dp", role="data_plane", database="off", admin_listen="off", cluster_data_plane_heartbeat="1",
                      cluster_control_plane=f"127.0.0.1:{cluster}", cluster_cert=cert[0], cluster_cert_key=cert[1])
    dp.start()
    return cp, dp


def _wait_listed(cp, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        planes = httpx.get(cp.admin + "/clustering/data-planes").json()["data"]
        if planes and planes[0]["config_hash"].strip("0"):  # all zeros: no configuration yet
            return planes[0]
        time.sleep(0.1)
    raise AssertionError("the data plane never reported to the control plane")


def test_a_killed_data_plane_turns_offline_without_a_reload(gui_node, node_factory, tmp_path, page):
    cp, dp = _hybrid_pair(gui_node, node_factory, tmp_path)
    listed = _wait_listed(cp)
    page.goto(cp.gui + "/data-planes")
    row = page.locator("table.dataplanes tbody tr").first
    assert row.get_attribute("data-status") == "Online"
    text = row.inner_text()
    assert listed["hostname"] in text and listed["ip"] in text and listed["version"] in text
    assert listed["config_hash"][:12] in text and "behind" not in text  # the control plane's own hash
    page.evaluate("window.notReloaded = true")

    pid = int((dp.prefix / "pids" / "meshway.pid").read_text())
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the master and its workers: no goodbye to the control plane
    dp.started = False
    # 1.5 heartbeats (1 s here) plus the page's 2 s refresh; the bound is only there to end the wait
    page.wait_for_selector("table.dataplanes tbody tr[data-status=Offline]", timeout=30_000)
    assert page.evaluate("window.notReloaded") is True
    assert page.console_errors == []


def test_a_data_plane_behind_the_control_plane_is_flagged(gui_node, node_factory, tmp_path, page):
    cp, dp = _hybrid_pair(gui_node, node_factory, tmp_path)
    _wait_listed(cp)
    pid = int((dp.prefix / "pids" / "meshway.pid").read_text())
    os.killpg(os.getpgid(pid), signal.SIGSTOP)  # frozen: it can take no new config
    try:
        httpx.post(cp.admin + "/services", data={"name": "new", "url": "http://127.0.0.1:9"}).raise_for_status()
        page.goto(cp.gui + "/data-planes")
        page.wait_for_selector("table.dataplanes tbody tr:has(.warn:text('behind'))", timeout=15_000)
    finally:
        os.killpg(os.getpgid(pid), signal.SIGCONT)


def test_a_mesh_data_plane_shows_its_inbound_certificate_and_turns_offline_when_killed(gui_node, tmp_path, page, dps):
    import sys

    from tests.integration.mesh.test_dp_run import WEB, Cp, Dp, wait_until

    class GuiCp(Cp):
        def __init__(self) -> None:  # Cp's control plane, with the dashboard on
            self.dp_port = free_port()
            self.node = gui_node("cp", role="control_plane", proxy_listen="off",
                                 mesh_dp_listen=f"127.0.0.1:{self.dp_port}")
            self.node.start()

    cp = GuiCp()
    web_port, app_port = free_port(), free_port()
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    web = Dp(cp, tmp_path, "web", WEB, "name=web", "address=127.0.0.1", f"port={web_port}", f"app_port={app_port}",
             app=app)
    dps.append(web)
    wait_until(web.ready, what="web ready")
    wait_until(lambda: cp.dataplanes()["web"]["dataplaneInsight"].get("mTLS"), what="web certificate")

    page.goto(cp.node.gui + "/data-planes")
    row = page.locator("table.dataplanes tbody tr[data-name=web]")
    assert row.get_attribute("data-status") == "Online"
    text = row.inner_text()
    assert f"web:{web_port}" in text and "default" in text and "127.0.0.1" in text
    assert " UTC" in row.locator("td").nth(10).inner_text()  # its certificate's expiry
    page.evaluate("window.notReloaded = true")

    os.killpg(web.proc.pid, signal.SIGKILL)  # the data plane and its app, without a goodbye
    page.wait_for_selector("table.dataplanes tbody tr[data-name=web][data-status=Offline]", timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    assert page.console_errors == []


def test_data_planes_page_through_two_meshes_each_once(gui_node, page):
    """Pages of 100 over the meshes in turn (each page asks the Admin API for its rows only)."""
    node = gui_node()
    node.start()
    expected = set()
    with httpx.Client(base_url=node.admin) as admin:
        for mesh, count in (("alpha", 130), ("beta", 30)):
            admin.put(f"/meshes/{mesh}", json={"type": "Mesh", "name": mesh}).raise_for_status()
            for i in range(count):
                name = f"{mesh}-{i}"
                admin.put(f"/meshes/{mesh}/dataplanes/{name}", json={
                    "type": "Dataplane", "mesh": mesh, "name": name, "networking": {
                        "address": "127.0.0.1", "inbound": [{"port": 20000 + i, "tags": {"kuma.io/service": mesh}}]}}
                ).raise_for_status()
                expected.add((mesh, name))
    page.goto(node.gui + "/data-planes")
    seen = []
    for _ in range(3):  # bounded: two pages expected
        rows = page.locator("table.dataplanes tbody tr")
        seen += [(rows.nth(i).locator("td").nth(2).inner_text(), rows.nth(i).get_attribute("data-name"))
                 for i in range(rows.count())]
        if page.locator("a.next").count() == 0:
            break
        page.locator("a.next").click()
        page.wait_for_load_state()
    assert len(seen) == 160 and set(seen) == expected  # every data plane once, across the two meshes
    assert "160 data planes, 101–160 shown" in page.locator("p.note").inner_text()
    assert page.console_errors == []
