"""`meshway ingress-controller` end to end against kmock's EMULATED Kubernetes API server.

No real kube-apiserver can run here: the cluster is kmock's in-memory emulator (tests/k8s/apiserver.py).
Everything else is real: the controller process (lightkube list + watch over HTTP), a DB-less meshway
node receiving POST /config, and HTTP origins on loopback answered through the proxy.
"""
from __future__ import annotations

import subprocess

import httpx

from tests.helpers.node import MESHWAY, clean_env, node_factory  # noqa: F401  (fixture)
from tests.k8s.apiserver import EmulatedApiServer
from tests.k8s.conftest import eventually as _eventually


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "default"},
           "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
INGRESS = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": "demo", "namespace": "default"},
           "spec": {"ingressClassName": "kong", "rules": [{"host": "demo.example", "http": {"paths": [
               {"path": "/echo", "pathType": "Prefix",
                "backend": {"service": {"name": "echo", "port": {"number": 80}}}}]}}]}}


def _slice(port: int) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "echo-x1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "echo"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}


def test_ingress_routes_follow_endpoints_and_deletion_kmock_emulated_apiserver(apiserver, controller, origins):
    node, log = controller
    port_a, port_b = origins
    apiserver.create(SERVICE)
    endpoints = apiserver.create(_slice(port_a))
    apiserver.create(INGRESS)

    def get(path="/echo/hi"):
        return httpx.get(node.proxy + path, headers={"Host": "demo.example"}, timeout=5)

    # the route answers through the proxy, with KIC's defaults: path kept, Host preserved
    response = _eventually(get, lambda r: r.status_code == 200, "route through the proxy")
    assert response.text == "origin-a /echo/hi host=demo.example", log.read_text()
    # Prefix /echo also matches /echo itself (KIC's ~/echo$), not /echoes
    assert get("/echo").status_code == 200
    assert get("/echoes").status_code == 404
    assert httpx.get(node.proxy + "/echo/hi", headers={"Host": "other.example"}).status_code == 404

    # the endpoints change: traffic moves to the new pod
    apiserver.patch(endpoints, {"ports": [{"name": "http", "port": port_b, "protocol": "TCP"}]})
    _eventually(get, lambda r: r.text.startswith("origin-b"), "traffic moved to the new endpoint")

    # the Ingress is deleted: the route is gone
    apiserver.delete(INGRESS)
    _eventually(get, lambda r: r.status_code == 404, "route gone after the Ingress was deleted")
    config = httpx.get(node.admin + "/config?format=json").json()
    assert not any(s.get("routes") for s in config.get("services", [])) and not config.get("routes")


def test_bad_ingress_is_left_out_and_logged_the_rest_serves_kmock_emulated_apiserver(
        apiserver, controller, origins):
    node, log = controller
    apiserver.create(SERVICE)
    apiserver.create(_slice(origins[0]))
    bad = {**INGRESS, "metadata": {"name": "bad", "namespace": "default",
                                   "annotations": {"konghq.com/regex-priority": "high"}}}
    apiserver.create(bad)
    apiserver.create(INGRESS)
    _eventually(lambda: httpx.get(node.proxy + "/echo/", headers={"Host": "demo.example"}),
                lambda r: r.status_code == 200, "the good Ingress serves")
    _eventually(log.read_text, lambda t: "Ingress default/bad: metadata.annotations[konghq.com/regex-priority]"
                in t, "the bad Ingress is named in the log")


def test_a_type_the_apiserver_does_not_serve_is_skipped_with_one_line_kmock_emulated_apiserver(
        node_factory, tmp_path, origins):  # noqa: F811
    from tests.k8s.apiserver import SERVED

    server = EmulatedApiServer({k: v for k, v in SERVED.items() if k != "v1/secrets"}).start()
    node = node_factory(database="off")
    node.start()
    log_path = tmp_path / "controller.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [MESHWAY, "ingress-controller", "--kubeconfig", str(server.kubeconfig(tmp_path / "kubeconfig")),
             "--kong-admin-url", node.admin, "--proxy-sync-seconds", "0.2"],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env())
        try:
            server.create(SERVICE)
            server.create(_slice(origins[0]))
            server.create(INGRESS)
            _eventually(lambda: httpx.get(node.proxy + "/echo/", headers={"Host": "demo.example"}),
                        lambda r: r.status_code == 200, "the Ingress serves without Secrets")
        finally:
            proc.terminate()
            proc.wait(10)
            server.stop()
    assert log_path.read_text().count("Secret is not served by the API server: skipped") == 1


def _in(namespace: str, obj: dict, host: str | None = None) -> dict:
    out = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    if host:
        out["spec"] = {**obj["spec"], "rules": [{**obj["spec"]["rules"][0], "host": host}]}
    return out


def test_watch_namespace_takes_a_comma_separated_list_kmock_emulated_apiserver(apiserver, start_controller, origins):
    node, log = start_controller("--watch-namespace", "team-a,team-b")
    for ns in ("team-a", "team-b", "elsewhere"):
        apiserver.create(_in(ns, SERVICE))
        apiserver.create(_in(ns, _slice(origins[0])))
        apiserver.create(_in(ns, INGRESS, host=f"{ns}.example"))

    def get(ns):
        return httpx.get(node.proxy + "/echo/", headers={"Host": f"{ns}.example"}, timeout=5)
    for ns in ("team-a", "team-b"):
        _eventually(lambda: get(ns), lambda r: r.status_code == 200, f"the Ingress of {ns}")
    assert get("elsewhere").status_code == 404, log.read_text()
    services = {s["name"] for s in httpx.get(node.admin + "/services").json()["data"]}
    assert services == {"team-a.echo.80", "team-b.echo.80"}


def test_host_alias_and_header_annotations_through_the_proxy_kmock_emulated_apiserver(
        apiserver, controller, origins):
    node, log = controller
    apiserver.create(SERVICE)
    apiserver.create(_slice(origins[0]))
    apiserver.create({**INGRESS, "metadata": {**INGRESS["metadata"], "annotations": {
        "konghq.com/host-aliases": "alias.example", "konghq.com/headers.x-canary": "yes"}}})

    def get(host, **headers):
        return httpx.get(node.proxy + "/echo/", headers={"Host": host, **headers}, timeout=5)
    _eventually(lambda: get("alias.example", **{"x-canary": "yes"}), lambda r: r.status_code == 200,
                "the alias host with the header", )
    assert get("demo.example", **{"x-canary": "yes"}).status_code == 200
    assert get("alias.example").status_code == 404  # the header match is required
    assert get("alias.example", **{"x-canary": "no"}).status_code == 404


def test_health_probes_say_ready_once_a_configuration_reached_the_node_kmock_emulated_apiserver(
        apiserver, start_controller):
    from tests.helpers.node import free_port

    probes, dead = free_port(), free_port()
    # the node the controller pushes to is not there: alive, not ready
    start_controller("--health-probe-bind-address", f"127.0.0.1:{probes}", "--kong-admin-url",
                     f"http://127.0.0.1:{dead}")
    url = f"http://127.0.0.1:{probes}"
    assert _eventually(lambda: httpx.get(url + "/healthz"), lambda r: r.status_code == 200, "healthz").text == "ok\n"
    assert httpx.get(url + "/readyz").status_code == 503
    assert httpx.get(url + "/other").status_code == 404


def test_readyz_turns_200_after_the_first_push_kmock_emulated_apiserver(apiserver, start_controller):
    from tests.helpers.node import free_port

    probes = free_port()
    node, log = start_controller("--health-probe-bind-address", f"127.0.0.1:{probes}")
    _eventually(lambda: httpx.get(f"http://127.0.0.1:{probes}/readyz"), lambda r: r.status_code == 200,
                "ready after the first push")
    assert "configuration pushed" in log.read_text()


def test_a_bad_probe_address_is_refused_with_its_flag():
    done = subprocess.run([MESHWAY, "ingress-controller", "--health-probe-bind-address", "nowhere"],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 1
    assert "--health-probe-bind-address: expected [HOST]:PORT or off, got 'nowhere'" in done.stdout


def test_a_node_that_lost_the_configuration_gets_it_again_kmock_emulated_apiserver(apiserver, controller, origins):
    node, log = controller
    apiserver.create(SERVICE)
    apiserver.create(_slice(origins[0]))
    apiserver.create(INGRESS)

    def get():
        return httpx.get(node.proxy + "/echo/", headers={"Host": "demo.example"}, timeout=5)
    _eventually(get, lambda r: r.status_code == 200, "the Ingress serves")
    # the node's configuration replaced behind the controller's back (as a restarted container starts empty)
    # (no check that the route is gone meanwhile: the controller may already have pushed again)
    assert httpx.post(node.admin + "/config", json={"_format_version": "3.0"}).status_code == 201
    _eventually(log.read_text, lambda t: "the node's configuration changed under us" in t, "the drift seen")
    _eventually(get, lambda r: r.status_code == 200, "the controller pushed again")
