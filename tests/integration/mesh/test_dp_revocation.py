"""A revoked dataplane token ends a live session too (beyond Kuma, which checks it only when a data
plane connects): the data plane is disconnected within seconds and `dp run` exits with the reason.
On the way, `inspect dataplanes` shows Kuma's status and notes for a live data plane whose app is down."""
from __future__ import annotations

import sys

from tests.helpers.node import free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import WEB, Cp, Dp, dps, wait_until  # noqa: F401


def _rows(cp: Cp) -> dict[str, str]:
    return {line.split()[1]: line for line in cp.cli("inspect", "dataplanes").stdout.splitlines()[1:]}


def test_revoking_the_token_of_a_connected_data_plane_disconnects_it(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    (tmp_path / "other").mkdir()
    app_port, other_port = free_port(), free_port()
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    web = Dp(cp, tmp_path, "web", WEB, "name=web", "address=127.0.0.1", f"port={free_port()}",
             f"app_port={app_port}", app=app)
    other = Dp(cp, tmp_path / "other", "other", WEB, "name=other", "address=127.0.0.1", f"port={other_port}",
               f"app_port={free_port()}")  # no app behind its inbound
    dps.extend((web, other))
    for dp in (web, other):
        wait_until(dp.ready, timeout=40, what="data plane ready")
    wait_until(lambda: " Online " in _rows(cp)["web"], timeout=20, what="web Online")
    # Kuma's rule: connected, but every inbound's app down -> Offline, with the note naming the inbound
    wait_until(lambda: f"inbound[port={other_port},svc=web] is not ready" in _rows(cp)["other"], timeout=20,
               what="other's note")
    assert " Offline " in _rows(cp)["other"]

    revoked = cp.cli("revoke", "dataplane-token", "--token-file", str(tmp_path / "token-web"))
    assert revoked.returncode == 0, revoked.stderr
    assert web.proc.wait(30) == 1  # cut within seconds, not at its next reconnection
    assert "the control plane refused this data plane: the dataplane token has been revoked" in web.output()
    assert "dataplane default/web disconnected: its token has been revoked" in cp.node.error_log()
    wait_until(lambda: " Offline " in _rows(cp)["web"], timeout=15, what="web offline")
    assert other.proc.poll() is None and other.ready()  # another token's data plane goes on
