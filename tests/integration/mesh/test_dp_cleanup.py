"""Offline data planes are deleted after `mesh_dataplane_cleanup_age` (Kuma's dataplaneCleanupAge, 72h)."""
from __future__ import annotations

import os
import signal
import sys
import time

from tests.helpers.node import free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import WEB, Cp, Dp, dps, wait_until  # noqa: F401


class ShortCleanupCp(Cp):
    def __init__(self, node_factory, age: str):
        self.dp_port = free_port()
        self.node = node_factory("cp", role="control_plane", proxy_listen="off",
                                 mesh_dp_listen=f"127.0.0.1:{self.dp_port}", mesh_dataplane_cleanup_age=age)
        self.node.start()


def test_a_crashed_data_plane_is_deleted_after_the_cleanup_age(node_factory, tmp_path, dps):
    cp = ShortCleanupCp(node_factory, "2s")
    app = [sys.executable, "-c", "import time; time.sleep(300)"]
    dp = Dp(cp, tmp_path, "web", WEB, "name=web", "address=127.0.0.1", f"port={free_port()}",
            f"app_port={free_port()}", app=app)
    dps.append(dp)
    wait_until(dp.ready, timeout=40, what="web ready")
    time.sleep(3)  # online for longer than the age: kept
    assert "web" in cp.dataplanes()
    os.killpg(dp.proc.pid, signal.SIGKILL)  # a crash: no goodbye, the Dataplane stays registered
    dp.proc.wait(10)
    wait_until(lambda: "Offline" in str(cp.cli("inspect", "dataplanes").stdout), timeout=15, what="web offline")
    wait_until(lambda: "web" not in cp.dataplanes(), timeout=20, what="web deleted after 2 s offline")
    # logged once the delete is done, so a moment after the API stops listing it
    wait_until(lambda: "dataplane default/web deleted: offline for" in cp.node.error_log(), what="the delete logged")
