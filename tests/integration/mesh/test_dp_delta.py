"""Incremental pushes to `meshway dp run` data planes (Envoy's delta xDS): a change reaches a
connected data plane as what changed since its version; a data plane that comes back after a few
changes gets what changed since the version it cached; one that missed more changes than the
control plane remembers gets the whole configuration. Traffic flows through all of it."""
from __future__ import annotations

import os
import re
import signal
import sys

import httpx

from meshway.cluster._delta import HISTORY
from tests.helpers.node import free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import CLIENT, WEB, Cp, Dp, dig, dps, wait_until  # noqa: F401

APPLIED = re.compile(r"configuration (\w+) applied in [\d.]+ ms \((.*)\)")


def _put_dataplane(cp: Cp, name: str) -> None:
    """A Dataplane of its own service, registered without a process (as `kumactl apply` does)."""
    body = {"type": "Dataplane", "mesh": "default", "name": name,
            "networking": {"address": "127.0.0.1", "inbound": [{"port": free_port(), "servicePort": free_port(),
                                                                "tags": {"kuma.io/service": name}}]}}
    answer = httpx.put(f"{cp.node.admin}/meshes/default/dataplanes/{name}", json=body, timeout=30)
    assert answer.status_code in (200, 201), answer.text


def _applied(dp: Dp) -> list[tuple[str, str]]:
    """(config hash, how it came) of each configuration the data plane applied, in order."""
    return APPLIED.findall(dp.output())


def _kill(dp: Dp) -> str:
    """SIGKILL the data plane (no goodbye: its Dataplane stays); the hash it last applied."""
    last = _applied(dp)[-1][0]
    os.killpg(dp.proc.pid, signal.SIGKILL)
    dp.proc.wait()
    return last


def _mesh_answer(client: Dp, name: str) -> str:
    return dig(client.dns_port, f"{name}.mesh")


def test_changes_arrive_as_deltas_and_a_data_plane_behind_gets_the_whole_configuration(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    web_port, app_port, outbound = free_port(), free_port(), free_port()
    (tmp_path / "hello.txt").write_text("hello from web\n")
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    web = Dp(cp, tmp_path, "web", WEB, "name=web", "address=127.0.0.1", f"port={web_port}", f"app_port={app_port}",
             app=app)
    dps.append(web)
    wait_until(web.ready, timeout=40, what="web ready")

    def start_client() -> Dp:
        client = Dp(cp, tmp_path, "client", CLIENT, f"outbound={outbound}")
        dps.append(client)
        wait_until(client.ready, timeout=40, what="client ready")
        return client

    def traffic_flows() -> bool:
        return httpx.get(f"http://127.0.0.1:{outbound}/hello.txt", timeout=3).text == "hello from web\n"

    client = start_client()
    wait_until(traffic_flows, timeout=30, what="client -> web")
    assert _applied(client)[0][1] == "whole configuration"  # a new data plane starts from the whole

    # a change reaches a connected data plane as a delta from the version it runs
    seen = len(_applied(client))
    before = _applied(client)[-1][0]
    _put_dataplane(cp, "api-0")
    wait_until(lambda: _mesh_answer(client, "api-0").startswith("240."), timeout=30, what="api-0.mesh on the client")
    # the Dataplane and its service's VIP: two resources, not the mesh
    assert [how for _, how in _applied(client)[seen:]] == [f"delta from {before}: 2 changed, 0 removed"]
    pushed = re.findall(r"pushing to \d+ data plane\(s\) \(whole: (\d+) bytes; delta from \w+: \d+ changed, "
                        r"\d+ removed, (\d+) bytes\)", cp.node.error_log())
    assert pushed and all(int(delta) < int(whole) for whole, delta in pushed), pushed
    assert traffic_flows()

    # down during two changes: back from its cache, it gets what changed since the version it had
    cached = _kill(client)
    _put_dataplane(cp, "api-1")
    assert httpx.delete(f"{cp.node.admin}/meshes/default/dataplanes/api-0", timeout=30).status_code in (200, 204)
    client = start_client()
    assert f"serving the cached configuration {cached}" in client.output()
    wait_until(lambda: _mesh_answer(client, "api-1").startswith("240."), timeout=30, what="api-1.mesh after restart")
    wait_until(lambda: _mesh_answer(client, "api-0") == "", timeout=30, what="api-0.mesh gone after restart")
    hows = [how for _, how in _applied(client)]
    # api-1 and the VIPs changed, api-0 removed
    assert hows[0] == f"delta from {cached}: 2 changed, 1 removed", hows
    assert "whole configuration" not in hows, hows
    assert traffic_flows()

    # down during more changes than the control plane remembers: the whole configuration
    cached = _kill(client)
    for i in range(2, HISTORY + 3):
        seen = len(_applied(web))
        _put_dataplane(cp, f"api-{i}")
        wait_until(lambda: len(_applied(web)) > seen, timeout=30, what=f"web has api-{i}")  # one version each
    client = start_client()
    assert f"serving the cached configuration {cached}" in client.output()
    last = f"api-{HISTORY + 2}"
    wait_until(lambda: _mesh_answer(client, last).startswith("240."), timeout=30, what=f"{last}.mesh after resync")
    hows = [how for _, how in _applied(client)]
    assert hows[0] == "whole configuration", hows
    assert f"runs {cached}, not among the last {HISTORY} versions: sending the whole configuration" \
        in cp.node.error_log()
    assert _applied(client)[-1][0] == _applied(web)[-1][0]  # both on the control plane's current version
    assert _mesh_answer(client, "api-1").startswith("240.")
    assert traffic_flows()

    # every configuration web applied is counted on its connection's subscription (written in batches)
    def acknowledged() -> tuple[int, int]:
        total = cp.dataplanes()["web"]["dataplaneInsight"]["subscriptions"][-1]["status"]["total"]
        return total["responsesSent"], total["responsesAcknowledged"]

    applied = len(_applied(web))
    wait_until(lambda: acknowledged() == (applied, applied), timeout=20, what=f"web's {applied} configurations counted")
