"""`meshway dp run --name N --mesh M` with no Dataplane file: it listens as the stored Dataplane says."""
from __future__ import annotations

import os
import signal
import socket
import subprocess

from tests.helpers.node import MESHWAY, clean_env, free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import Cp, wait_until

STORED = """\
type: Dataplane
mesh: default
name: stored
networking:
  address: 127.0.0.1
  inbound:
  - port: {port}
    tags:
      kuma.io/service: stored
  transparentProxying:
    redirectPortInbound: {inbound}
    redirectPortOutbound: {outbound}
"""


def _accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return True


def _dp_run(cp: Cp, tmp_path, name: str, ready_port: int, token) -> list[str]:
    return [MESHWAY, "dp", "run", f"--cp-address=https://127.0.0.1:{cp.dp_port}", f"--dataplane-token-file={token}",
            "--name", name, "--mesh", "default", "--readiness-port", str(ready_port), "--dns-enabled=false",
            "--work-dir", str(tmp_path / f"work-{name}")]


def test_the_stored_dataplanes_redirect_ports_are_the_listeners(node_factory, tmp_path):
    cp = Cp(node_factory)
    inbound, outbound = free_port(), free_port()
    resource = tmp_path / "stored.yaml"
    resource.write_text(STORED.format(port=free_port(), inbound=inbound, outbound=outbound))
    applied = cp.cli("apply", "-f", str(resource))
    assert applied.returncode == 0, applied.stderr
    ready_port = free_port()
    log = open(tmp_path / "dp.log", "w+")
    proc = subprocess.Popen(_dp_run(cp, tmp_path, "stored", ready_port, cp.token(tmp_path, "stored")),
                            stdout=log, stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True)
    try:
        import httpx

        wait_until(lambda: httpx.get(f"http://127.0.0.1:{ready_port}/ready", timeout=2).status_code == 200,
                   timeout=40, what="data plane ready")
        assert _accepts(inbound) and _accepts(outbound)  # redirectPortInbound/Outbound, not 15006/15001
        assert proc.poll() is None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait(30)
        log.close()


def test_an_unknown_name_is_refused_with_the_control_planes_reason(node_factory, tmp_path):
    cp = Cp(node_factory)
    done = subprocess.run(_dp_run(cp, tmp_path, "ghost", free_port(), cp.token(tmp_path, "ghost")),
                          capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 1, done.stderr
    assert "no Dataplane 'ghost' in mesh 'default'" in done.stderr
