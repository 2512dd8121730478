"""Two traditional nodes on one PostgreSQL: a change through one is proxied by the other."""
import time

import httpx
import pytest

from tests.e2e.test_node_lifecycle import _origin_for_test

pytestmark = pytest.mark.postgres


def test_two_nodes_share_postgres(node_factory, postgres_db):
    origin = _origin_for_test()
    a = node_factory("a", **postgres_db.settings())
    b = node_factory("b", **postgres_db.settings())
    assert a.cli("migrations", "bootstrap").returncode == 0
    status = a.cli("migrations", "status")
    assert status.returncode == 0 and '"bootstrapped": true' in status.stdout
    a.start()
    b.start()
    try:
        assert httpx.post(a.admin + "/services", json={"name": "s", "url": f"http://127.0.0.1:{origin.port}"}).status_code == 201
        assert httpx.post(a.admin + "/services/s/routes", json={"paths": ["/shared"]}).status_code == 201
        t0 = time.monotonic()  # from node a's answer: its own workers' apply is not node b's delay
        while httpx.get(b.proxy + "/shared/x").status_code != 200:
            assert time.monotonic() - t0 < 3, "node b did not see node a's change"
            time.sleep(0.05)
        assert httpx.get(b.admin + "/routes").json()["data"][0]["paths"] == ["/shared"]
        assert httpx.get(b.proxy + "/shared/x").text == "origin saw /x"
    finally:
        origin.stop()


def test_postgres_not_bootstrapped_is_a_clear_error(node_factory, postgres_server):
    from tests.fixtures.postgres import create_database

    db = create_database(postgres_server)
    node = node_factory("fresh", **db.settings())
    result = node.start(check=False)
    assert result.returncode == 1 and "meshway migrations bootstrap" in result.stderr


def test_a_change_through_one_node_wakes_the_other_at_once(node_factory, postgres_db):
    """PostgreSQL LISTEN/NOTIFY: with db_update_frequency = 3600, node b only sees node a's change
    within the test's wait because the database notified it (meshway.store._notify)."""
    origin = _origin_for_test()
    a = node_factory("a", **postgres_db.settings())
    b = node_factory("b", db_update_frequency="3600", **postgres_db.settings())
    assert a.cli("migrations", "bootstrap").returncode == 0
    a.start()
    b.start()
    try:
        assert httpx.post(a.admin + "/services", json={"name": "n", "url": f"http://127.0.0.1:{origin.port}"}).status_code == 201
        assert httpx.post(a.admin + "/services/n/routes", json={"paths": ["/notified"]}).status_code == 201
        deadline = time.monotonic() + 60  # a bound for a loaded machine, far below the 3600 s poll
        while httpx.get(b.proxy + "/notified/x").status_code != 200:
            assert time.monotonic() < deadline, "node b did not hear of node a's change"
            time.sleep(0.1)
        assert httpx.get(b.proxy + "/notified/x").text == "origin saw /x"
    finally:
        origin.stop()
