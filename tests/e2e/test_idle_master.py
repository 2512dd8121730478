"""An idle node's master sleeps: it learns that a worker exited from the worker's pidfd, not by
looking every 0.2 s (it shares the workers' cores, where each wake-up delays a request), and it
still respawns a worker that dies."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx


def _wakeups_for_test(pid: int) -> int:
    """Context switches of every thread of `pid` so far (each is a wake-up or a preemption)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def _workers_for_test(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_an_idle_master_does_not_wake_and_still_respawns_a_dead_worker(node_factory):
    # DB-less, no Admin API (the benchmark's node): a database node's master also checks the
    # store for changes, and its Admin API server has a timer of its own
    node = node_factory(database="off", admin_listen="off", status_listen="off")
    node.start()
    master = int((node.prefix / "pids" / "meshway.pid").read_text())
    time.sleep(1.0)  # past start-up
    before = _wakeups_for_test(master)
    time.sleep(2.0)
    # the 0.2 s look woke it ~10 times in 2 s; what wakes it now is an exiting worker only
    assert _wakeups_for_test(master) - before <= 2
    workers = _workers_for_test(master)
    assert len(workers) == 1, workers
    os.kill(workers[0], signal.SIGKILL)
    respawned: list[int] = []
    for _ in range(100):  # bounded: ~10 s
        respawned = [p for p in _workers_for_test(master) if p != workers[0]]
        if respawned:
            break
        time.sleep(0.1)
    assert respawned, "the master did not respawn the killed worker"
    for _ in range(100):  # the new worker serves
        try:
            if httpx.get(node.proxy + "/nothing-here", timeout=2).status_code == 404:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        raise AssertionError("the respawned worker does not answer")
    assert "exited with status -9; respawning" in node.error_log()
