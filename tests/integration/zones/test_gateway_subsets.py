"""Subsets across zones: `api` runs in cloud as two instances, tagged `version: v1` and `version: v2`.
The resolver's `Subsets` (Consul's `Filter` on `Service.Meta`) and its `Redirect.ServiceSubset` or
`DefaultSubset` choose one; web's sidecar asks for it by the subset's SNI prefix, and cloud's
gateway sends that name only to the instances the filter selects."""
from __future__ import annotations

import sys

import httpx

from tests.helpers.node import free_port
from tests.integration.zones.test_cross_zone_calls import (  # noqa: F401
    ALLOW_ALL, API, DATA, MTLS_ON, WEB, http_app, last_line, wait_for, zones)

SUBSETS = """\
Kind = "service-resolver"
Name = "api"
Subsets = {
  v1 = {
    Filter = "Service.Meta.version == v1"
  }
  v2 = {
    Filter = "Service.Meta.version == v2"
  }
}
"""
TO_V1 = SUBSETS + 'Redirect {\n  Service       = "api"\n  ServiceSubset = "v1"\n  Datacenter    = "cloud"\n}\n'
DEFAULT_V2 = SUBSETS + 'DefaultSubset = "v2"\nRedirect {\n  Datacenter = "cloud"\n}\n'


def api_instance(zone, tmp_path, version: str) -> int:
    root = tmp_path / f"api-{version}"
    root.mkdir()
    (root / "index.html").write_text(f"api {version}\n")
    port, app = free_port(), free_port()
    template = API.replace("name: api", f"name: api-{version}") + f"      version: {version}\n"
    ready = zone.dataplane(f"api-{version}", template.format(port=port, app_port=app),
                           [sys.executable, "-m", "http.server", str(app), "--bind", "127.0.0.1", "--directory", str(root)])
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{ready}/ready").status_code == 200, what=f"api-{version} ready")
    return port


def answers(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    except httpx.HTTPError as e:
        return f"error: {e}"


def test_a_subset_name_reaches_only_the_instances_its_filter_selects(zones, tmp_path):
    onprem, cloud = zones
    for zone in (onprem, cloud):
        zone.apply(MTLS_ON)
        zone.apply(ALLOW_ALL)
    onprem.gateway(free_port(), free_port())
    cloud.gateway(free_port(), free_port())
    v1_port = api_instance(cloud, tmp_path, "v1")
    v2_port = api_instance(cloud, tmp_path, "v2")
    web_port, web_app, api_out = free_port(), free_port(), free_port()
    onprem.dataplane("web", WEB.format(port=web_port, app_port=web_app, api_out=api_out), http_app(web_app))
    assert onprem.meshway("config", "write", str(DATA / "global_defaults.hcl")).returncode == 0

    written = onprem.meshway("config", "write", "-", stdin=TO_V1)
    assert written.returncode == 0, written.stderr
    # six answers in a row from v1 (round robin over both instances would alternate v1 and v2), through
    # cloud's route for the subset: the entry reaches cloud after onprem, and until it does cloud's
    # gateway takes the subset's name by its wildcard route (whose instances may not all be known yet)
    def v1_only_by_the_subset_route():
        if [answers(api_out) for _ in range(6)] != ["api v1\n"] * 6:
            return None
        line = last_line(cloud.log("gw/node/logs/access.log"), "sni=v1.api.default.cloud.internal")
        return line if line and "route=local-default-api-v1 mode=passthrough" in line else None

    line = wait_for(v1_only_by_the_subset_route, timeout=60, what="web reaches api's subset v1 only, by its route")
    assert f"upstream=127.0.0.1:{v1_port}" in line, line

    written = onprem.meshway("config", "write", "-", stdin=DEFAULT_V2)
    assert written.returncode == 0, written.stderr
    wait_for(lambda: [answers(api_out) for _ in range(6)] == ["api v2\n"] * 6, timeout=60,
             what="DefaultSubset v2 only")
    line = wait_for(lambda: last_line(cloud.log("gw/node/logs/access.log"), "sni=v2.api.default.cloud.internal"),
                    what="cloud's gateway logged the default subset's SNI")
    assert f"upstream=127.0.0.1:{v2_port}" in line, line
