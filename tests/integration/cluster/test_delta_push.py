"""Incremental pushes (`meshway.cluster._delta`) between a real control plane and real data planes
over TLS websockets: a data plane that asks for deltas gets what changed since the version it
runs, one that rejected a version gets the next one from the version it still runs, one that
cannot build on a delta asks for the whole configuration; a data plane that did not ask for
deltas (a hybrid one) keeps getting whole configurations."""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from meshway.cluster import ClusterClient
from tests.integration.cluster.cluster_for_test import Cluster_for_test, run_for_test, wait_for_test


class DeltaClient(ClusterClient):
    DELTA = True


class Source:
    """Ten services; each version changes the host of one of them."""

    def __init__(self) -> None:
        self.version = 0

    def snapshot(self, version: int) -> tuple[dict[str, Any], str]:
        snap = {"_format_version": "3.0", "routes": [],
                "services": [{"id": f"svc-{i}", "host": f"v{version if i == version % 10 else 0}.test", "port": 80}
                             for i in range(10)]}
        return snap, hashlib.md5(json.dumps(snap, sort_keys=True).encode()).hexdigest()

    def bump(self) -> str:
        self.version += 1
        return self.snapshot(self.version)[1]

    def __call__(self) -> tuple[dict[str, Any], str]:
        return self.snapshot(self.version)


def _applied_lines(caplog, config_hash: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "meshway.cluster" and r.getMessage().startswith(f"configuration {config_hash} applied in")]


def test_deltas_for_data_planes_that_ask_whole_configurations_for_the_others(tmp_path, shared_cert, cluster_log):
    source = Source()

    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        c.source = source
        try:
            await c.start_cp()
            first = source.snapshot(0)[1]
            _, delta_applier = await c.start_dp("delta", client_class=DeltaClient)
            _, whole_applier = await c.start_dp("whole")
            await wait_for_test(lambda: len(_applied_lines(cluster_log, first)) == 2)
            second = source.bump()
            c.server.notify_changed()
            await wait_for_test(lambda: len(_applied_lines(cluster_log, second)) == 2)
            return first, second, delta_applier.calls[-1][0]
        finally:
            await c.close()

    first, second, snapshot = run_for_test(scenario())
    assert sorted(_applied_lines(cluster_log, first)) == [
        f"configuration {first} applied in 1.5 ms", f"configuration {first} applied in 1.5 ms (whole configuration)"]
    # one service changed: the data plane that asked for deltas got that one, the other the whole
    assert sorted(_applied_lines(cluster_log, second)) == [
        f"configuration {second} applied in 1.5 ms",
        f"configuration {second} applied in 1.5 ms (delta from {first}: 1 changed, 0 removed)"]
    assert snapshot == source.snapshot(1)[0]  # the same document as the whole one
    pushed = next(r.getMessage() for r in cluster_log.records if r.getMessage().startswith(f"configuration {second}: "))
    assert f"delta from {first}: 1 changed, 0 removed" in pushed


def test_after_a_rejected_version_the_next_delta_builds_on_the_version_still_running(tmp_path, shared_cert,
                                                                                    cluster_log):
    source = Source()

    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        c.source = source
        try:
            await c.start_cp()
            _, applier = await c.start_dp("delta", client_class=DeltaClient)
            await wait_for_test(lambda: applier.hashes == [source.snapshot(0)[1]])
            applier.reject[source.bump()] = "no such upstream"
            c.server.notify_changed()
            await wait_for_test(lambda: len(applier.hashes) == 2)
            third = source.bump()
            c.server.notify_changed()
            await wait_for_test(lambda: _applied_lines(cluster_log, third))
            return applier.calls[-1][0]
        finally:
            await c.close()

    snapshot = run_for_test(scenario())
    first, third = source.snapshot(0)[1], source.snapshot(2)[1]
    # versions 1 and 2 changed svc-1 and svc-2, from version 0, which the data plane kept running
    assert _applied_lines(cluster_log, third) == [
        f"configuration {third} applied in 1.5 ms (delta from {first}: 2 changed, 0 removed)"]
    assert snapshot == source.snapshot(2)[0]


def test_a_data_plane_that_cannot_build_on_a_delta_asks_for_the_whole_configuration(tmp_path, shared_cert,
                                                                                    cluster_log):
    source = Source()

    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        c.source = source
        try:
            await c.start_cp()
            old = source.snapshot(0)[1]
            second = source.bump()
            c.server.notify_changed()
            await wait_for_test(lambda: c.server.config_hash == second)
            # it says it runs the old version (a cache), but does not have its resources
            _, applier = await c.start_dp("delta", client_class=DeltaClient, config_hash=old)
            await wait_for_test(lambda: _applied_lines(cluster_log, second))
            return old, second, applier.calls[-1][0]
        finally:
            await c.close()

    old, second, snapshot = run_for_test(scenario())
    messages = [r.getMessage() for r in cluster_log.records]
    assert any(m.startswith(f"configuration {second} is a delta from {old}, but this data plane runs nothing")
               for m in messages), messages
    assert any(m.endswith(f"runs {old} and asks for the whole configuration") for m in messages)
    assert _applied_lines(cluster_log, second) == [f"configuration {second} applied in 1.5 ms (whole configuration)"]
    assert snapshot == source.snapshot(1)[0]
    assert logging.WARNING in {r.levelno for r in cluster_log.records if "is a delta from" in r.getMessage()}
