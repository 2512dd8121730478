"""A data plane certificate from a mesh's builtin CA is renewed before it expires (at 2/3 of
`dpCert.rotation.expiration`) under traffic: a new serial, same key, and no request lost."""
from __future__ import annotations

import re
import sys
import time

from tests.helpers.node import free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import Cp, Dp, dps, wait_until  # noqa: F401
from tests.integration.mesh.test_mesh_permissions import (ALLOW_ALL, CLIENT, WEB, Load, apply, http_status,
                                                          peer_certificate)

SHORT_LIVED = """\
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
    mode: STRICT
    dpCert:
      rotation:
        expiration: 24s
"""


def serial(text: str) -> str:
    return re.search(r"Serial Number:\s*\n?\s*([0-9a-f:]+)", text).group(1)


def test_certificates_renew_before_expiry_under_load(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    web_port, app_port, echo_port, echo_app, web_out, echo_out = (free_port() for _ in range(6))
    (tmp_path / "hello.txt").write_text("hello from web\n")
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    apply(cp, tmp_path, ALLOW_ALL)
    apply(cp, tmp_path, SHORT_LIVED)
    web = Dp(cp, tmp_path, "web", WEB, f"port={web_port}", f"app_port={app_port}", f"echo_port={echo_port}",
             f"echo_app={echo_app}", app=app)
    dps.append(web)
    client = Dp(cp, tmp_path, "client", CLIENT, f"web_out={web_out}", f"echo_out={echo_out}")
    dps.append(client)
    wait_until(lambda: web.ready() and client.ready(), what="both ready")
    wait_until(lambda: http_status(web_out) == 200, what="web through the mesh")
    first = peer_certificate(client, web_port)
    assert "default mesh CA ca-1" in first
    load = Load(web_out)
    deadline = time.monotonic() + 40
    while serial(peer_certificate(client, web_port)) == serial(first):
        assert time.monotonic() < deadline, "web's certificate was not renewed within 40 s of a 24 s lifetime"
        time.sleep(1)
    time.sleep(3)
    ok, failures = load.stop()
    assert failures == [] and ok > 20, (ok, failures[:10])
