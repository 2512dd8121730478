"""`reuseport` on a proxy listener: each worker accepts on a socket of its own (as nginx's
`reuseport`), so the kernel spreads new connections over the workers; without it the workers
share one socket. A dead worker's socket stays open in the master, so connections the kernel
hands it wait for the respawned worker instead of being refused."""
from __future__ import annotations

import os
import signal
import subprocess

import httpx

from tests.e2e.test_rate_limit_workers import _requests_by_worker_for_test


def _listening_sockets_for_test(port: int) -> int:
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def _with_route_for_test(node) -> None:
    admin = httpx.Client(base_url=node.admin)
    assert admin.post("/services", json={"name": "s", "url": "http://127.0.0.1:9"}).status_code == 201
    assert admin.post("/services/s/routes", json={"name": "r", "paths": ["/"]}).status_code == 201
    assert admin.post("/routes/r/plugins", json={"name": "request-termination", "config": {
        "status_code": 200, "message": "ok"}}).status_code == 201


def test_each_worker_accepts_on_its_own_socket_and_both_get_connections(node_factory):
    node = node_factory(workers="2")
    node.start()
    assert _listening_sockets_for_test(node.proxy_port) == 2
    assert _listening_sockets_for_test(node.proxy_ssl_port) == 2
    _with_route_for_test(node)
    by_worker: dict[str, int] = {}
    for _ in range(40):  # fresh connections: each new source port is hashed anew
        r = httpx.get(node.proxy + "/x", headers={"Connection": "close"})
        if r.status_code != 200:
            continue  # the route has not reached this worker yet
        by_worker = _requests_by_worker_for_test(node)
        if len(by_worker) == 2 and 0 not in by_worker.values():
            break
    assert len(by_worker) == 2 and 0 not in by_worker.values(), by_worker


def test_without_reuseport_the_workers_share_one_socket(node_factory):
    node = node_factory(workers="2")
    node.settings["proxy_listen"] = f"127.0.0.1:{node.proxy_port}"
    node.conf.write_text("".join(f"{k} = {v}\n" for k, v in node.settings.items()))
    node.start()
    assert _listening_sockets_for_test(node.proxy_port) == 1


def _worker_pids_for_test(node) -> list[int]:
    master = int((node.prefix / "pids" / "meshway.pid").read_text())
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in children]


def test_connections_to_a_dead_workers_socket_wait_for_its_respawn(node_factory):
    node = node_factory(workers="2")
    node.start()
    _with_route_for_test(node)
    client = httpx.Client(timeout=30)
    for _ in range(200):  # both workers have the route
        statuses = {client.get(node.proxy + "/x", headers={"Connection": "close"}).status_code for _ in range(8)}
        if statuses == {200}:
            break
    assert statuses == {200}
    before = _worker_pids_for_test(node)
    assert len(before) == 2, before
    os.kill(before[1], signal.SIGKILL)
    # 20 fresh connections: about half are hashed to the dead worker's socket; none is refused.
    answers = [client.get(node.proxy + "/x", headers={"Connection": "close"}) for _ in range(20)]
    assert [r.status_code for r in answers] == [200] * 20
    assert len(_worker_pids_for_test(node)) == 2
