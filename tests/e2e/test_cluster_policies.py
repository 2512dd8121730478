"""`policy: cluster` for rate-limiting and response-ratelimiting: two traditional nodes on one real
PostgreSQL share one limit; a DB-less node and a control plane refuse it with Kong's message. Also
rate-limiting's `policy: redis` on a real node (its Redis calls need a Task, as the cluster's do)."""
from __future__ import annotations

import subprocess

import httpx
import psycopg
import pytest

from tests.e2e.test_response_ratelimiting_plugin import (CostingOriginForTest, get_for_test, redis_port_for_test,  # noqa: F401
                                                         remaining_for_test)
from tests.helpers.node import free_port

pytestmark = pytest.mark.postgres


def counted_for_test(postgres_db, like: str) -> int:
    """What the nodes have counted so far in PostgreSQL under keys matching `like`."""
    with psycopg.connect(host=postgres_db.host, port=postgres_db.port, user=postgres_db.user,
                         password=postgres_db.password or None, dbname=postgres_db.name) as conn:
        return conn.execute("SELECT coalesce(sum(value), 0) FROM plugin_counters WHERE key LIKE %s", (like,)).fetchone()[0]


def wait_counted_for_test(postgres_db, like: str, total: int) -> None:
    # The cost is counted in the log phase, after the response: wait for it before the next request.
    for _ in range(500):
        if counted_for_test(postgres_db, like) >= total:
            return
        subprocess.run(["sleep", "0.02"])
    raise AssertionError(f"{like} never reached {total}")


def test_two_nodes_on_one_postgres_share_the_limits(node_factory, postgres_db):
    origin = CostingOriginForTest()
    a = node_factory("a", workers="2", **postgres_db.settings())
    b = node_factory("b", **postgres_db.settings())
    assert a.cli("migrations", "bootstrap").returncode == 0
    a.start()
    b.start()
    admin = httpx.Client(base_url=a.admin)
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    for name in ("rl", "rr"):
        assert admin.post("/services/s/routes", json={"name": name, "paths": [f"/{name}"]}).status_code == 201
    assert admin.post("/routes/rl/plugins", json={"name": "rate-limiting", "config": {
        "day": 4, "policy": "cluster", "fault_tolerant": False}}).status_code == 201
    assert admin.post("/routes/rr/plugins", json={"name": "response-ratelimiting", "config": {
        "limits": {"videos": {"day": 3}}, "policy": "cluster", "fault_tolerant": False}}).status_code == 201
    nodes = [a, b]
    for node in nodes:  # both nodes have the plugins (their pollers saw the writes)
        while get_for_test(node, "/rr/x").headers.get("X-RateLimit-Limit-videos-day") != "3":
            subprocess.run(["sleep", "0.1"])
    while "X-RateLimit-Limit-Day" not in get_for_test(b, "/rl/x").headers:  # b's first, counted, request
        subprocess.run(["sleep", "0.1"])

    limited = [get_for_test(nodes[i % 2], "/rl/x") for i in range(4)]
    assert [r.status_code for r in limited] == [200, 200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining-Day"] for r in limited] == ["2", "1", "0", "0"]
    assert counted_for_test(postgres_db, "ratelimit:%:day") == 4  # the refused request is not counted

    got = []
    for i in range(4):
        got.append(get_for_test(nodes[i % 2], "/rr/x?cost=videos=1"))
        if got[-1].status_code == 200:
            wait_counted_for_test(postgres_db, "response-ratelimit:%:videos:day", i + 1)
    assert [r.status_code for r in got] == [200, 200, 200, 429]
    assert [remaining_for_test(r) for r in got] == ["2", "1", "0", "0"]


def test_dbless_and_control_plane_refuse_cluster(node_factory, postgres_db, tmp_path):
    node = node_factory("dbless", database="off")
    node.start()
    decl = ('_format_version: "3.0"\nplugins:\n- name: response-ratelimiting\n'
            "  config: {policy: cluster, limits: {videos: {minute: 1}}}\n")
    refused = httpx.post(node.admin + "/config", content=decl, headers={"Content-Type": "text/yaml"})
    assert refused.status_code == 400 and "expected one of: local, redis" in refused.text, refused.text
    assert httpx.post(node.admin + "/config", content=decl.replace("cluster", "local"),
                      headers={"Content-Type": "text/yaml"}).status_code == 201

    crt, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", str(key),
                    "-out", str(crt), "-days", "2", "-nodes", "-subj", "/CN=kong_clustering/"], check=True, capture_output=True)
    cp = node_factory("cp", role="control_plane", proxy_listen="off", cluster_listen=f"127.0.0.1:{free_port()}",
                      cluster_cert=str(crt), cluster_cert_key=str(key), **postgres_db.settings())
    assert cp.cli("migrations", "bootstrap").returncode == 0
    cp.start()
    bad = httpx.post(cp.admin + "/plugins", json={"name": "rate-limiting", "config": {"minute": 5, "policy": "cluster"}})
    assert bad.status_code == 400 and bad.json()["fields"]["config"]["policy"] == "expected one of: local, redis"


def test_rate_limiting_redis_policy_on_a_node(node_factory, tmp_path, redis_port_for_test):  # noqa: F811
    origin = CostingOriginForTest()
    decl = tmp_path / "meshway.yml"
    decl.write_text(
        '_format_version: "3.0"\n'
        f"services:\n- name: s\n  url: {origin.url}\n  routes:\n"
        '  - name: r\n    paths: ["/r"]\n'
        "    plugins:\n    - name: rate-limiting\n"
        f"      config: {{policy: redis, fault_tolerant: false, redis: {{host: 127.0.0.1, port: {redis_port_for_test}}},"
        " day: 2}\n")
    node = node_factory(database="off", declarative_config=str(decl), workers="2")
    node.start()
    got = [get_for_test(node, "/r/a") for _ in range(3)]
    assert [r.status_code for r in got] == [200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining-Day"] for r in got] == ["1", "0", "0"]
