"""The controller pointed at a control plane with a database (PostgreSQL, as the hybrid tests):
it pushes its entities tagged `managed-by-ingress-controller` with `_info.select_tags`, the control
plane replaces only those, and a hybrid data plane proxies the Ingress while the user's own untagged
service keeps serving. kmock's EMULATED API server stands in for kube-apiserver; the controller,
both meshway nodes and the HTTP through the data plane are real."""
from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.e2e.test_hybrid_walkthrough import _cp, _dp
from tests.helpers.node import MESHWAY, clean_env, free_port, node_factory  # noqa: F401  (fixture)
from tests.k8s.conftest import eventually
from tests.k8s.test_controller_flags_kmock_emulated_apiserver import _backend, _ingress

pytestmark = [pytest.mark.postgres]
TAG = "managed-by-ingress-controller"


def _cluster_cert(tmp_path) -> tuple[str, str]:
    cert = (str(tmp_path / "cluster.crt"), str(tmp_path / "cluster.key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout",
                    cert[1], "-out", cert[0], "-days", "2", "-nodes", "-subj", "/CN=kong_clustering/"],
                   check=True, capture_output=True)
    return cert


def test_an_ingress_pushed_to_a_control_plane_is_proxied_by_its_data_plane_kmock_emulated_apiserver(
        apiserver, node_factory, postgres_db, origins, tmp_path):  # noqa: F811
    cert, cluster_port = _cluster_cert(tmp_path), free_port()
    cp = _cp(node_factory, postgres_db, cert, cluster_port)
    assert cp.cli("migrations", "bootstrap").returncode == 0
    cp.start()
    dp = _dp(node_factory, "dp", cert, cluster_port)
    dp.start()
    admin = httpx.Client(base_url=cp.admin)
    # the user's own service and consumer on the control plane, without the controller's tag
    assert admin.post("/services", json={"name": "mine", "url": f"http://127.0.0.1:{origins[1]}"}).status_code == 201
    assert admin.post("/services/mine/routes", json={"name": "mine", "paths": ["/mine"]}).status_code == 201
    assert admin.post("/consumers", json={"username": "me"}).status_code == 201
    log_path = tmp_path / "controller.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [MESHWAY, "ingress-controller", "--kubeconfig", str(apiserver.kubeconfig(tmp_path / "kubeconfig")),
             "--kong-admin-url", cp.admin, "--proxy-sync-seconds", "0.2", "--health-probe-bind-address", "off"],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env())
        try:
            _backend(apiserver, origins[0])
            first = _ingress("first", "first.example", "kong")
            apiserver.create(first)
            get = lambda host, path="/echo/": httpx.get(dp.proxy + path, headers={"Host": host}, timeout=5)  # noqa: E731
            response = eventually(lambda: get("first.example"), lambda r: r.status_code == 200, "served by the DP")
            assert response.text.startswith("origin-a "), response.text
            # a second Ingress, then the first deleted: only the controller's entities change
            apiserver.create(_ingress("second", "second.example", "kong"))
            eventually(lambda: get("second.example"), lambda r: r.status_code == 200, "second served")
            apiserver.delete(first)
            eventually(lambda: get("first.example"), lambda r: r.status_code == 404, "first gone from the DP")
            assert get("any.example", "/mine/x").text.startswith("origin-b "), "the user's route still serves"
            services = admin.get("/services").json()["data"]
            assert sorted(s["name"] for s in services if TAG not in (s.get("tags") or [])) == ["mine"]
            assert [c["username"] for c in admin.get("/consumers").json()["data"]] == ["me"]
            tagged = [r for r in admin.get("/routes").json()["data"] if TAG in (r.get("tags") or [])]
            assert [r["hosts"] for r in tagged] == [["second.example"]], tagged
            assert "has a database: pushing the entities tagged managed-by-ingress-controller only" in \
                log_path.read_text()
        finally:
            proc.terminate()
            proc.wait(10)
