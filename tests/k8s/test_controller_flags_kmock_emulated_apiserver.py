"""The controller's KIC flags and its list/watch recovery, end to end against kmock's EMULATED API server.

No real kube-apiserver can run here: the cluster is kmock's in-memory emulator (tests/k8s/apiserver.py).
The controller process, the DB-less meshway node and the HTTP through its proxy are real.
"""
from __future__ import annotations

import subprocess

import httpx

from tests.helpers.node import MESHWAY, clean_env, node_factory  # noqa: F401  (fixture)
from tests.k8s.apiserver import SERVED, EmulatedApiServer
from tests.k8s.conftest import eventually
from tests.k8s.test_ingress_controller_kmock_emulated_apiserver import INGRESS, SERVICE, _in, _slice


def _ingress(name: str, host: str, class_name: str | None = None, annotation: str | None = None,
             **annotations: str) -> dict:
    meta = {"name": name, "namespace": "default", "annotations": dict(annotations)}
    if annotation:
        meta["annotations"]["kubernetes.io/ingress.class"] = annotation
    spec = {"rules": [{**INGRESS["spec"]["rules"][0], "host": host}]}
    if class_name:
        spec["ingressClassName"] = class_name
    return {**INGRESS, "metadata": meta, "spec": spec}


def _get(node, host: str) -> httpx.Response:
    return httpx.get(node.proxy + "/echo/", headers={"Host": host}, timeout=5)


def _serves(node, host: str) -> None:
    eventually(lambda: _get(node, host), lambda r: r.status_code == 200, f"{host} served")


def _backend(apiserver, port: int, ns: str = "default") -> None:
    apiserver.create(_in(ns, SERVICE))
    apiserver.create(_in(ns, _slice(port)))


def _status(apiserver, name: str) -> dict:
    [obj] = [o for o in apiserver.list("Ingress") if o["metadata"]["name"] == name]
    return obj.get("status") or {}


def test_update_status_false_writes_no_status_kmock_emulated_apiserver(apiserver, start_controller, origins):
    node, log = start_controller("--update-status=false", "--publish-status-address", "192.0.2.10")
    _backend(apiserver, origins[0])
    apiserver.create(_ingress("first", "first.example", "kong"))
    _serves(node, "first.example")
    # a second change, pushed after the first: with status updates on, the first Ingress's status
    # is written right after the first push, before the controller pushes anything else
    apiserver.create(_ingress("second", "second.example", "kong"))
    _serves(node, "second.example")
    assert _status(apiserver, "first") == {} and _status(apiserver, "second") == {}, log.read_text()


def test_publish_service_address_goes_to_ingress_status_and_follows_the_service_kmock_emulated_apiserver(
        apiserver, start_controller, origins):
    node, log = start_controller("--publish-service", "kong/kong-proxy")
    proxy_service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kong-proxy", "namespace": "kong"},
                     "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.99", "ports": [{"port": 80}]},
                     "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}
    apiserver.create(proxy_service)
    _backend(apiserver, origins[0])
    apiserver.create(_ingress("demo", "demo.example", "kong"))
    _serves(node, "demo.example")
    eventually(lambda: _status(apiserver, "demo"),
               lambda s: s.get("loadBalancer") == {"ingress": [{"ip": "203.0.113.7"}]}, "the load balancer's IP")
    # the load balancer gets a DNS name instead: the Ingress status follows
    apiserver.patch(proxy_service, {"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}})
    eventually(lambda: _status(apiserver, "demo"),
               lambda s: s.get("loadBalancer") == {"ingress": [{"hostname": "lb.example"}]}, "the new hostname")
    # no load balancer address at all: the Service's cluster IP (KIC's last resort)
    apiserver.patch(proxy_service, {"status": {"loadBalancer": {"ingress": None}}})
    eventually(lambda: _status(apiserver, "demo"),
               lambda s: s.get("loadBalancer") == {"ingress": [{"ip": "10.96.0.99"}]}, "the cluster IP")


def test_publish_status_address_wins_over_publish_service_kmock_emulated_apiserver(
        apiserver, start_controller, origins):
    node, log = start_controller("--publish-service", "kong/kong-proxy",
                                 "--publish-status-address", "198.51.100.1,gw.example")
    apiserver.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kong-proxy", "namespace": "kong"},
                      "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.99", "ports": [{"port": 80}]},
                      "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}})
    _backend(apiserver, origins[0])
    apiserver.create(_ingress("demo", "demo.example", "kong"))
    status = eventually(lambda: _status(apiserver, "demo"), lambda s: s.get("loadBalancer"), "Ingress status")
    assert status["loadBalancer"]["ingress"] == [{"ip": "198.51.100.1"}, {"hostname": "gw.example"}]


def test_a_non_default_ingress_class_kmock_emulated_apiserver(apiserver, start_controller, origins):
    node, log = start_controller("--ingress-class", "internal")
    _backend(apiserver, origins[0])
    internal = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": {"name": "internal", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
                "spec": {"controller": "ingress-controllers.konghq.com/kong"}}
    apiserver.create(internal)
    apiserver.create({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "kong"},
                      "spec": {"controller": "ingress-controllers.konghq.com/kong"}})
    apiserver.create(_ingress("by-name", "by-name.example", class_name="internal"))
    apiserver.create(_ingress("by-annotation", "by-annotation.example", annotation="internal"))
    apiserver.create(_ingress("no-class", "no-class.example"))
    apiserver.create(_ingress("kong", "kong.example", class_name="kong"))
    apiserver.create(_ingress("nginx", "nginx.example", annotation="nginx"))
    # the legacy annotation wins over ingressClassName, as in KIC's store
    apiserver.create(_ingress("both", "both.example", class_name="internal", annotation="nginx"))
    for host in ("by-name.example", "by-annotation.example", "no-class.example"):
        _serves(node, host)
    for host in ("kong.example", "nginx.example", "both.example"):
        assert _get(node, host).status_code == 404, log.read_text()
    routes = {r["name"] for r in httpx.get(node.admin + "/routes").json()["data"]}
    assert all(name.startswith(("default.by-name.", "default.by-annotation.", "default.no-class."))
               for name in routes), routes

    # "internal" is no longer the cluster's default class: the Ingress naming no class is not ours any more
    apiserver.patch(internal, {"metadata": {"annotations": {"ingressclass.kubernetes.io/is-default-class": None}}})
    eventually(lambda: _get(node, "no-class.example"), lambda r: r.status_code == 404, "no-class dropped")
    assert _get(node, "by-name.example").status_code == 200


def test_watch_namespace_with_one_namespace_kmock_emulated_apiserver(apiserver, start_controller, origins):
    node, log = start_controller("--watch-namespace", "team-a")
    for ns in ("team-a", "team-b"):
        _backend(apiserver, origins[0], ns)
        apiserver.create(_in(ns, INGRESS, host=f"{ns}.example"))
    _serves(node, "team-a.example")
    assert _get(node, "team-b.example").status_code == 404
    assert {s["name"] for s in httpx.get(node.admin + "/services").json()["data"]} == {"team-a.echo.80"}


def test_proxy_sync_seconds_batches_changes_into_one_push_kmock_emulated_apiserver(
        apiserver, start_controller, origins):
    # a long interval: everything created during it goes to the node in one POST /config
    node, log = start_controller("--proxy-sync-seconds", "10")
    eventually(log.read_text, lambda t: t.count("configuration pushed") == 1, "the first (empty) push")
    _backend(apiserver, origins[0])
    for name in ("one", "two", "three"):
        apiserver.create(_ingress(name, f"{name}.example", "kong"))
    _serves(node, "one.example")
    assert _get(node, "two.example").status_code == 200 and _get(node, "three.example").status_code == 200
    # the controller logs a push once POST /config has answered: the node may serve it a moment before
    eventually(log.read_text, lambda t: t.count("configuration pushed") >= 2, "the push logged")
    assert log.read_text().count("configuration pushed") == 2, log.read_text()


def test_a_bad_proxy_sync_seconds_is_refused_with_its_flag():
    done = subprocess.run([MESHWAY, "ingress-controller", "--proxy-sync-seconds", "0"],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 1
    assert "--proxy-sync-seconds must be positive" in done.stdout


def test_a_watch_answered_410_gone_lists_again_kmock_emulated_apiserver(apiserver, controller, origins):
    node, log = controller
    _backend(apiserver, origins[0])
    apiserver.create(_ingress("kept", "kept.example", "kong"))
    lost = apiserver.create(_ingress("lost", "lost.example", "kong"))
    _serves(node, "kept.example")
    _serves(node, "lost.example")
    # "lost" is deleted while its DELETED event never reaches the controller, then the watch says
    # 410 Gone: only a new list shows that it is gone (a watch resumed from the cache would not)
    apiserver.lose_then_expire(lost)
    eventually(lambda: _get(node, "lost.example"), lambda r: r.status_code == 404, "the lost Ingress removed")
    assert _get(node, "kept.example").status_code == 200
    assert "watching Ingress: 410 Gone (resourceVersion too old); listing again" in log.read_text()


def test_kong_crds_installed_after_the_start_are_picked_up_kmock_emulated_apiserver(
        node_factory, tmp_path, origins):  # noqa: F811
    without_plugins = {k: v for k, v in SERVED.items() if not k.endswith("/kongplugins")}
    server = EmulatedApiServer(without_plugins).start()
    node = node_factory(database="off")
    node.start()
    log_path = tmp_path / "controller.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [MESHWAY, "ingress-controller", "--kubeconfig", str(server.kubeconfig(tmp_path / "kubeconfig")),
             "--kong-admin-url", node.admin, "--proxy-sync-seconds", "0.2", "--health-probe-bind-address", "off"],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env())
        try:
            _backend(server, origins[0])
            server.create(_ingress("demo", "demo.example", "kong", **{"konghq.com/plugins": "tag"}))
            eventually(log_path.read_text, lambda t: "KongPlugin is not served by the API server: skipped" in t,
                       "the missing CRD logged")
            # the Ingress needs a plugin that cannot exist yet: left out (never served without it)
            eventually(log_path.read_text, lambda t: "Ingress default/demo" in t, "the Ingress left out")
            assert _get(node, "demo.example").status_code == 404
            # the KongPlugin CRD is installed, then a KongPlugin created: the controller starts following it
            server.serve("configuration.konghq.com/v1/kongplugins", "KongPlugin", True)
            server.create({"apiVersion": "configuration.konghq.com/v1", "kind": "KongPlugin",
                           "metadata": {"name": "tag", "namespace": "default"}, "plugin": "response-transformer",
                           "config": {"add": {"headers": ["x-tagged:yes"]}}})
            response = eventually(lambda: _get(node, "demo.example"), lambda r: r.status_code == 200, "served")
            assert response.headers["x-tagged"] == "yes"
        finally:
            proc.terminate()
            proc.wait(10)
            server.stop()
    assert log_path.read_text().count("KongPlugin is not served by the API server: skipped") == 1
