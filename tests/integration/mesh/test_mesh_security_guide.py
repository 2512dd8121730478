"""docs/guides/mesh-security.md: every `sh` block of its tested part, in order, on loopback, against a
control plane and the two data planes the guide describes. Substitutions, because tests use random
ports: the guide's 127.0.0.1:8001 (Admin API), 127.0.0.1:8080 (web's inbound), 10001 (client's
outbound), 15053 (client's DNS proxy) and 9902 (web's readiness port) become free ports; `meshway apply` gets `--cp-address`;
`/kuma/` is a scratch directory."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers.node import clean_env, free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import Cp, Dp, dps, wait_until  # noqa: F401
from tests.integration.mesh.test_mesh_permissions import CLIENT, WEB

REPO = Path(__file__).resolve().parents[3]
GUIDE = REPO / "docs" / "guides" / "mesh-security.md"
PART = re.compile(r"<!-- mesh security: begin.*?-->(.*)<!-- mesh security: end -->", re.S)
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def test_every_command_of_the_guide(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    web_port, app_port, echo_port, echo_app, web_out, echo_out = (free_port() for _ in range(6))
    (tmp_path / "index.html").write_text("hello from web\n")
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    web = Dp(cp, tmp_path, "web", WEB, f"port={web_port}", f"app_port={app_port}", f"echo_port={echo_port}",
             f"echo_app={echo_app}", app=app)
    dps.append(web)
    client = Dp(cp, tmp_path, "client", CLIENT, f"web_out={web_out}", f"echo_out={echo_out}")
    dps.append(client)
    wait_until(lambda: web.ready() and client.ready(), what="both ready")
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{web_out}/", timeout=3).status_code == 200, what="web")

    subs = [("127.0.0.1:8001", cp.node.admin.removeprefix("http://")), ("127.0.0.1:8080", f"127.0.0.1:{web_port}"),
            ("127.0.0.1:10001", f"127.0.0.1:{web_out}"), ("127.0.0.1:9902", f"127.0.0.1:{web.ready_port}"), ("-p 15053 ", f"-p {client.dns_port} "),
            ("meshway apply ", f"meshway apply --cp-address {cp.node.admin} "),
            ("meshway explain ", f"meshway explain --cp-address {cp.node.admin} "),
            ("meshway inspect ", f"meshway inspect --cp-address {cp.node.admin} "),
            ("/kuma/web/", f"{web.work}/"), ("/kuma/client/", f"{client.work}/"), ("/kuma/", f"{tmp_path}/")]
    blocks = BLOCK.findall(PART.search(GUIDE.read_text()).group(1))
    assert len(blocks) == 11
    env = {**clean_env(), "PATH": f"{REPO / '.venv' / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"}
    out = []
    for block in blocks:
        for old, new in subs:
            block = block.replace(old, new)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], capture_output=True, text=True, env=env,
                              timeout=120)
        assert done.returncode == 0, (block, done.stdout[-3000:], done.stderr[-3000:])
        out.append(done.stdout)
    assert out[0] == "hello from web\n"  # mTLS off: allowed
    assert "service web is not reachable from this data plane" in out[2]  # mTLS on, no permission
    assert "status: NXDOMAIN" in out[2]  # ... and its name is not answered (reachable services)
    assert "issuer=O = meshway, CN = default mesh CA ca-1" in out[3]
    assert "URI:spiffe://default/web" in out[3] and "URI:kuma://version/v1" in out[3]
    assert "hello from web" in out[4]  # allow-all
    assert "service web is not reachable" in out[5]  # the specific deny beats the broader allow
    assert "hello from web" in out[6]
    wait_until(lambda: "mesh shadow deny (allowed)" in "".join(
        p.read_text(errors="replace") for p in (web.work / "logs").glob("*.log")), what="shadow deny logged")
    assert '"allow-all"' in out[7] and '"deny-client-to-web"' in out[7]
    assert "hello from web" in out[8]  # after the rotation to the provided CA
    assert "certificate issued by the mesh CA of backend ca-2 (provided)" in out[9]
    assert "ALLOWED: MeshTrafficPermission deny-client-to-web from[0]: AllowWithShadowDeny" in out[9]
    assert "AllowWithShadowDeny  from kuma.io/service=client  (deny-client-to-web from[0])" in out[9]
    assert "Kind                    Origins\nMeshTrafficPermission   kri_mtp_default_" in out[9]
    # web's own per-service metrics, then the control plane's mesh-wide view
    assert '{direction="inbound",source_service="client",destination_service="web",response_code="200"}' in out[10]
    assert out[10].count("meshway_mesh_requests_total") >= 2
    text = subprocess.run(
        ["bash", "-c", f"echo | openssl s_client -connect 127.0.0.1:{web_port} -servername sidecar.mesh.meshway "
                       f"-alpn meshway-mesh/1 -cert {client.work}/mesh/node.crt -key {client.work}/mesh/node.key "
                       f"2>/dev/null | openssl x509 -noout -issuer"], capture_output=True, text=True, timeout=30).stdout
    assert "CN = provided CA two" in text
