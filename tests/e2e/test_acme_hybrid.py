"""acme in hybrid mode, as Kong: configured on a control plane (real PostgreSQL) with a storage the
data planes share (a real redis-server), refused with `shm`. A TLS handshake on a data plane
orders the certificate there (pebble validates on that data plane's proxy), the data plane
serves it by SNI, and a second data plane started later serves the same certificate, read from
redis, without an order of its own. `POST /acme` on the control plane orders through redis too:
the data plane answers the CA's challenge."""
from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.e2e.test_acme_plugin import HOST, pebble_for_test  # noqa: F401 (fixture)
from tests.e2e.test_acme_redis_storage import (PASSWORD, redis_acme_config_for_test,  # noqa: F401 (fixture)
                                               redis_with_password_for_test, served_certificate_for_test,
                                               wait_served_for_test)
from tests.e2e.test_hybrid_walkthrough import _cp, _dp, _eventually
from tests.helpers.node import free_port

pytestmark = [pytest.mark.postgres]


def test_data_planes_order_and_share_certificates_through_redis(node_factory, postgres_db, pebble_for_test,
                                                                redis_with_password_for_test, tmp_path):
    import redis

    cert = (str(tmp_path / "cluster.crt"), str(tmp_path / "cluster.key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", cert[1],
                    "-out", cert[0], "-days", "2", "-nodes", "-subj", "/CN=kong_clustering/"], check=True, capture_output=True)
    cluster_port = free_port()
    cp = _cp(node_factory, postgres_db, cert, cluster_port)
    dp1 = _dp(node_factory, "dp1", cert, cluster_port)
    pebble = pebble_for_test(dp1.proxy_port)  # the CA validates on the first data plane only
    for node in (cp, dp1):
        node.conf.write_text(node.conf.read_text() + f"lua_ssl_trusted_certificate = {pebble.tls['ca']}\n")
    assert cp.cli("migrations", "bootstrap").returncode == 0
    cp.start()
    dp1.start()
    admin = httpx.Client(base_url=cp.admin, timeout=120)
    config = redis_acme_config_for_test(pebble, redis_with_password_for_test)
    shm = admin.post("/plugins", json={"name": "acme", "config": {**config, "storage": "shm"}})
    assert shm.status_code == 400 and shm.json()["fields"]["config"]["storage"] == "\"shm\" storage can't be used in Hybrid mode"
    assert admin.post("/services", json={"name": "acme-dummy", "url": "http://127.0.0.1:9"}).status_code == 201
    assert admin.post("/services/acme-dummy/routes", json={"paths": ["/.well-known/acme-challenge"]}).status_code == 201
    assert admin.post("/plugins", json={"name": "acme", "config": config}).status_code == 201
    _eventually(lambda: httpx.get(f"{dp1.proxy}/.well-known/acme-challenge/x", headers={"Host": HOST}).text == "Not found\n",
                what="the data plane runs acme")
    root = pebble.root(tmp_path / "pebble-root.pem")

    # Issued through the data plane: its first handshake for HOST gets the default certificate and
    # starts the order; the CA's challenge is answered by the same data plane.
    assert served_certificate_for_test(dp1.proxy_ssl_port, HOST, root) is None
    issued = wait_served_for_test(dp1.proxy_ssl_port, HOST, root, seconds=90)
    store = redis.Redis(port=redis_with_password_for_test, password=PASSWORD, db=2)
    assert store.exists(f"mesh:kong_acme:cert_key:{HOST}")
    listed = admin.get("/acme/certificates").json()["data"]  # the control plane reads the shared storage
    assert [c["host"] for c in listed] == [HOST] and listed[0]["valid"] is True

    # A second data plane finds it in redis: the very same certificate, no new order.
    dp2 = _dp(node_factory, "dp2", cert, cluster_port)
    dp2.start()
    assert wait_served_for_test(dp2.proxy_ssl_port, HOST, root, seconds=60) == issued

    # The control plane's Admin API orders too; the data plane answers the challenge from redis.
    other = "cp.auto.meshway.test"
    created = admin.post("/acme", json={"host": other})
    assert created.status_code == 201, created.text + pebble.log.read_text()[-3000:]
    from_cp = wait_served_for_test(dp2.proxy_ssl_port, other, root)
    assert wait_served_for_test(dp1.proxy_ssl_port, other, root) == from_cp
    assert admin.get("/certificates").json()["data"] == []  # hybrid: no entities, as Kong's client.lua
