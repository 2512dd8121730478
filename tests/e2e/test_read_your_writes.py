"""Read your writes (Kong's `worker_consistency = strict`): when the Admin API answers a write,
every worker of the node already proxies with it; no sleep, no retry, on a node with 2 workers."""
import logging
import time

import httpx
import pytest

from tests.e2e.test_node_lifecycle import _origin_for_test

log = logging.getLogger(__name__)


def _create_and_use_routes(node, origin_port: int, count: int) -> tuple[list[int], float]:
    """Create `count` routes one by one, each requested at once; (statuses, seconds spent writing)."""
    statuses, writing = [], 0.0
    with httpx.Client(timeout=30) as admin, httpx.Client(timeout=30) as proxy:
        assert admin.post(node.admin + "/services", json={"name": "s", "url": f"http://127.0.0.1:{origin_port}"}).status_code == 201
        for i in range(count):
            started = time.monotonic()
            created = admin.post(node.admin + "/services/s/routes", json={"name": f"r{i}", "paths": [f"/r{i}"]})
            writing += time.monotonic() - started
            assert created.status_code == 201, created.text
            # a fresh connection each time, so the kernel may hand it to either worker
            statuses.append(proxy.get(node.proxy + f"/r{i}/x", headers={"Connection": "close"}).status_code)
    return statuses, writing


def test_routes_proxy_as_soon_as_created(node_factory):
    origin = _origin_for_test()
    node = node_factory(workers="2")
    node.start()
    try:
        statuses, writing = _create_and_use_routes(node, origin.port, 200)
        assert statuses.count(404) == 0 and set(statuses) == {200}
        log.warning("200 route creations with worker_consistency = strict: %.2f s", writing)
    finally:
        origin.stop()


def test_key_auth_applies_as_soon_as_enabled(node_factory):
    origin = _origin_for_test()
    node = node_factory(workers="2")
    node.start()
    try:
        with httpx.Client(timeout=30) as c:
            for i in range(20):
                svc = f"s{i}"
                assert c.post(node.admin + "/services", json={"name": svc, "url": f"http://127.0.0.1:{origin.port}"}).status_code == 201
                assert c.post(node.admin + f"/services/{svc}/routes", json={"paths": [f"/{svc}"]}).status_code == 201
                assert c.get(node.proxy + f"/{svc}/x", headers={"Connection": "close"}).status_code == 200
                assert c.post(node.admin + f"/services/{svc}/plugins", json={"name": "key-auth"}).status_code == 201
                keyless = c.get(node.proxy + f"/{svc}/x", headers={"Connection": "close"})
                assert keyless.status_code == 401 and keyless.json() == {"message": "No API key found in request"}
    finally:
        origin.stop()


@pytest.mark.slow
def test_eventual_answers_before_the_workers_apply(node_factory):
    """`worker_consistency = eventual` (Kong's other value) keeps the old behaviour: writes answer
    at once and the workers follow shortly after."""
    origin = _origin_for_test()
    node = node_factory(workers="2", worker_consistency="eventual", db_update_frequency="5")
    node.start()
    try:
        statuses, _ = _create_and_use_routes(node, origin.port, 20)
        assert statuses.count(404) >= 1  # answered before the workers had the route
    finally:
        origin.stop()


def test_admin_latency_covers_the_wait_for_the_workers(node_factory):
    """X-Meshway-Admin-Latency, as Kong's X-Kong-Admin-Latency, covers the whole request: with the
    workers stopped, a write waits WRITE_WAIT for them and its latency header says so."""
    import os
    import signal

    from meshway.node._consistency import WRITE_WAIT
    from tests.e2e.test_crash_safety import _descendants

    node = node_factory(workers="1")
    node.start()
    master = int((node.prefix / "pids" / "meshway.pid").read_text())
    workers = _descendants(master)
    assert workers
    with httpx.Client(timeout=30) as admin:
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        try:
            created = admin.post(node.admin + "/services", json={"name": "late", "url": "http://127.0.0.1:9"})
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        assert created.status_code == 201, created.text
        assert int(created.headers["x-meshway-admin-latency"]) >= WRITE_WAIT * 1000
        read = admin.get(node.admin + "/services/late")  # reads do not wait
        assert int(read.headers["x-meshway-admin-latency"]) < WRITE_WAIT * 1000
