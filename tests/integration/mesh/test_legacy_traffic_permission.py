"""Kuma's legacy `TrafficPermission` with real `meshway dp run` data planes: applied with `meshway apply`
(Kuma's Universal YAML), listed at Kuma's `/meshes/{mesh}/traffic-permissions`, enforced with mTLS on
(an allow-all lets the client call web; a more specific permission for web that names another
source shadows it: the client is refused), shown by `inspect dataplane --type policies` and `explain`."""
from __future__ import annotations

import json
import sys

import httpx

from tests.helpers.node import free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import Cp, Dp, dps, wait_until  # noqa: F401
from tests.integration.mesh.test_mesh_permissions import (CLIENT, MTLS_ON, UNREACHABLE, WEB, apply, echoes, explain,
                                                          http_status, mesh_get, start_echo)

ALLOW_ALL = """\
type: TrafficPermission
name: allow-all-traffic
mesh: default
sources:
  - match:
      kuma.io/service: '*'
destinations:
  - match:
      kuma.io/service: '*'
"""
ONLY_OTHER_TO_WEB = """\
type: TrafficPermission
name: other-to-web
mesh: default
sources:
  - match:
      kuma.io/service: other
destinations:
  - match:
      kuma.io/service: web
"""


def test_legacy_traffic_permissions_between_two_data_planes(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    web_port, app_port, echo_port, echo_app = free_port(), free_port(), free_port(), free_port()
    web_out, echo_out = free_port(), free_port()
    (tmp_path / "hello.txt").write_text("hello from web\n")
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    echo = start_echo(echo_app)
    try:
        web = Dp(cp, tmp_path, "web", WEB, f"port={web_port}", f"app_port={app_port}", f"echo_port={echo_port}",
                 f"echo_app={echo_app}", app=app)
        client = Dp(cp, tmp_path, "client", CLIENT, f"web_out={web_out}", f"echo_out={echo_out}")
        dps.extend([web, client])
        wait_until(lambda: web.ready() and client.ready(), timeout=40, what="both ready")
        apply(cp, tmp_path, MTLS_ON)
        wait_until(lambda: str(http_status(web_out)).startswith(UNREACHABLE), timeout=20, what="denied by default")

        apply(cp, tmp_path, ALLOW_ALL)
        wait_until(lambda: http_status(web_out) == 200, timeout=20, what="the legacy allow-all allows")
        assert echoes(echo_out)
        assert "ALLOWED: TrafficPermission allow-all-traffic sources[0]: Allow" in explain(cp, "client", "web", 0)
        got = cp.cli("get", "traffic-permissions")
        assert got.returncode == 0 and got.stdout.splitlines()[1].split()[:2] == ["default", "allow-all-traffic"], got
        listed = httpx.get(f"{cp.node.admin}/meshes/default/traffic-permissions").json()
        assert [(p["name"], p["sources"]) for p in listed["items"]] == [
            ("allow-all-traffic", [{"match": {"kuma.io/service": "*"}}])]

        # a permission for web alone is more specific: it decides web's inbound, and names only `other`
        apply(cp, tmp_path, ONLY_OTHER_TO_WEB)
        wait_until(lambda: str(http_status(web_out)).startswith(UNREACHABLE), timeout=20, what="shadowed")
        wait_until(lambda: "RBAC: access denied" in mesh_get(client, web_port), timeout=20, what="web's inbound denies")
        assert echoes(echo_out)  # echo's inbound still takes the allow-all
        shown = cp.cli("inspect", "dataplane", "web", "--type", "policies")
        assert shown.returncode == 0, shown.stderr
        assert "Allow                from kuma.io/service=other  (TrafficPermission other-to-web sources[0])" \
            in shown.stdout, shown.stdout
        policies = json.loads(cp.cli("inspect", "dataplane", "web", "--type", "policies", "-o", "json").stdout)
        assert [p["kind"] for p in policies["policies"]] == ["TrafficPermission"]

        # invalid: refused with the field named, nothing stored
        bad = httpx.put(f"{cp.node.admin}/meshes/default/traffic-permissions/bad", json={
            "type": "TrafficPermission", "name": "bad", "mesh": "default",
            "sources": [{"match": {"version": "v1"}}], "destinations": [{"match": {"kuma.io/service": "web"}}]})
        assert bad.status_code == 400 and "sources[0].match" in bad.text
        assert httpx.get(f"{cp.node.admin}/meshes/default/traffic-permissions/bad").status_code == 404

        assert httpx.delete(f"{cp.node.admin}/meshes/default/traffic-permissions/other-to-web").status_code == 200
        wait_until(lambda: http_status(web_out) == 200, timeout=20, what="allowed again")
    finally:
        echo.kill()
        echo.wait()
