"""One data plane per name, as Kuma: a second `dp run` with a connected data plane's name is refused
(nothing of it stored) and keeps retrying; it gets in once the first has left."""
from __future__ import annotations

import time

from tests.helpers.node import free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import WEB, Cp, Dp, dps, wait_until  # noqa: F401


def _inbound_port(cp: Cp) -> int:
    return cp.dataplanes()["web"]["dataplane"]["networking"]["inbound"][0]["port"]


def test_a_second_data_plane_with_the_same_name_waits_for_the_first(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    first_port, second_port = free_port(), free_port()
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = Dp(cp, tmp_path / "one", "web", WEB, "name=web", "address=127.0.0.1", f"port={first_port}",
               f"app_port={free_port()}")
    dps.append(first)
    wait_until(first.ready, timeout=40, what="the first web ready")
    second = Dp(cp, tmp_path / "two", "web", WEB, "name=web", "address=127.0.0.1", f"port={second_port}",
                f"app_port={free_port()}")
    dps.append(second)
    wait_until(lambda: "already connected" in second.output(), timeout=30, what="the second one refused")
    assert "there is already an active stream from this node, try again later" in second.output()
    assert "refused data plane web" in cp.node.error_log()
    time.sleep(1)
    assert second.proc.poll() is None and not second.ready()  # it waits, it does not give up
    assert _inbound_port(cp) == first_port  # the first one's registration was not replaced
    assert first.ready()
    assert first.stop() == 0  # SIGTERM: the first leaves, deregistered
    # it retries with a backoff (at most 30 s apart): it gets in once the first has left
    wait_until(second.ready, timeout=60, what="the second one in once the first has left")
    assert _inbound_port(cp) == second_port
    # the control plane hears from the second one now (its inbound's health: no app behind it here)
    wait_until(lambda: f"inbound[port={second_port},svc=web] is not ready" in cp.cli("inspect", "dataplanes").stdout,
               timeout=20, what="the second one's inbound in inspect")
