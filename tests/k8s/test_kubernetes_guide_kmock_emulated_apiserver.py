"""docs/guides/kubernetes.md: every `sh` block, in order, against kmock's EMULATED Kubernetes API
server (no real kube-apiserver can run here). Real: the DB-less node, the controller process, the
HTTP traffic. Stand-ins, because there is no cluster: `kubectl apply -f` is
tests/k8s/kubectl_for_test.py (it creates each document through the API), and the pods of the
guide's Deployments are local HTTP servers, published as their Services' EndpointSlices as the
cluster's endpoint controller would. Substitutions, because tests use random ports and scratch
directories: 127.0.0.1:8000 / :8001 (proxy / Admin API), /tmp/meshway-kic, ~/.kube/config."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.helpers.node import clean_env, free_port
from tests.k8s.apiserver import SERVED, EmulatedApiServer
from tests.k8s.conftest import _Origin, eventually

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "guides" / "kubernetes.md"
PART = re.compile(r"<!-- kubernetes guide: begin -->(.*)<!-- kubernetes guide: end -->(.*)", re.S)
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
# what `kubectl apply` of the guide and of deploy/ creates, besides what the controller watches
MORE = {"v1/serviceaccounts": ("ServiceAccount", True),
        "apps/v1/deployments": ("Deployment", True),
        "rbac.authorization.k8s.io/v1/clusterroles": ("ClusterRole", False),
        "rbac.authorization.k8s.io/v1/clusterrolebindings": ("ClusterRoleBinding", False),
        "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False)}


@pytest.fixture
def pods():
    """Local HTTP servers standing in for the pods of echo, shop v1 and shop v2."""
    servers = {}
    for name in ("echo", "v1", "v2"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
        server.name = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    yield {name: s.server_address[1] for name, s in servers.items()}
    for s in servers.values():
        s.shutdown()
        s.server_close()


def endpoints(service: str, port: int, namespace: str = "default") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-pods", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}


def test_every_command_of_the_kubernetes_guide(tmp_path, pods):
    tested, rest = PART.search(GUIDE.read_text()).groups()
    blocks = BLOCK.findall(tested)
    assert len(blocks) == 11
    apiserver = EmulatedApiServer({**SERVED, **MORE}).start()
    proxy, admin = free_port(), free_port()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(f"#!/bin/sh\nexec {sys.executable} {REPO}/tests/k8s/kubectl_for_test.py \"$@\"\n")
    (bin_dir / "kubectl").chmod(0o755)
    env = {**clean_env(), "KMOCK_URL": apiserver.url, "MESHWAY_PROXY_LISTEN": f"127.0.0.1:{proxy}",
           "MESHWAY_ADMIN_LISTEN": f"127.0.0.1:{admin}",
           "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"}
    subs = [("127.0.0.1:8000", f"127.0.0.1:{proxy}"), ("127.0.0.1:8001", f"127.0.0.1:{admin}"),
            ("/tmp/meshway-kic", str(tmp_path / "node")),
            # the probes' default :10254 listens on every interface: loopback and a free port here
            ("--publish-status-address 192.0.2.10", "--publish-status-address 192.0.2.10 "
                                                    f"--health-probe-bind-address 127.0.0.1:{free_port()}"),
            ("~/.kube/config", str(apiserver.kubeconfig(tmp_path / "kubeconfig")))]
    blocks = [_substituted(b, subs) for b in blocks]
    prefix = str(tmp_path / "node")
    controller = None

    def run(block: str) -> str:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=120)
        assert done.returncode == 0, (block, done.stdout[-2000:], done.stderr[-2000:])
        return done.stdout

    try:
        run(blocks[0])  # the node
        assert "customresourcedefinition.apiextensions.k8s.io/kongplugins.configuration.konghq.com created" \
            in run(blocks[1])
        log = (tmp_path / "controller.log").open("w")
        controller = subprocess.Popen(["bash", "-c", "exec " + blocks[2].strip()], stdout=log,
                                      stderr=subprocess.STDOUT, env=env, cwd=REPO)
        assert "service/echo created" in run(blocks[3])
        apiserver.create(endpoints("echo", pods["echo"]))  # the echo pods
        assert "ingress.networking.k8s.io/echo created" in run(blocks[4])
        eventually(lambda: httpx.get(f"http://127.0.0.1:{proxy}/echo", headers={"Host": "echo.example"}),
                   lambda r: r.status_code == 401, "the Ingress with its key-auth")
        assert run(blocks[5]).split() == ["401", "200", "200", "200", "429"]

        assert "httproute.gateway.networking.k8s.io/shop created" in run(blocks[6])
        apiserver.create(endpoints("shop-v1", pods["v1"]))
        apiserver.create(endpoints("shop-v2", pods["v2"]))
        eventually(lambda: httpx.get(f"http://127.0.0.1:{proxy}/", headers={"Host": "shop.example"}),
                   lambda r: r.status_code == 200, "the HTTPRoute")
        counts = {line.split()[1]: int(line.split()[0]) for line in run(blocks[7]).splitlines()}
        assert counts.get("v1", 0) + counts.get("v2", 0) == 100 and 80 <= counts["v1"] <= 96, counts

        # what the guide says of the status
        [route] = apiserver.list("HTTPRoute")
        conditions = {c["type"]: c["reason"] for c in route["status"]["parents"][0]["conditions"]}
        assert conditions == {"Accepted": "Accepted", "ResolvedRefs": "ResolvedRefs",
                              "Programmed": "ConfiguredInGateway"}
        [ingress] = apiserver.list("Ingress")
        assert ingress["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.10"}]

        # a Gateway shared with the namespaces it selects
        out = run(blocks[8])
        assert "namespace/team-a created" in out and "httproute.gateway.networking.k8s.io/team-a created" in out
        apiserver.create(endpoints("echo", pods["echo"], "team-a"))
        eventually(lambda: run(blocks[9]), lambda o: o.split() == ["200"], "team-a's route on the shared Gateway")
        # what the guide says of a namespace without the label
        apiserver.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})
        apiserver.create({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                          "metadata": {"name": "team-b", "namespace": "team-b"},
                          "spec": {"parentRefs": [{"name": "shared", "namespace": "default"}],
                                   "hostnames": ["team-b.example"], "rules": [{"backendRefs": [
                                       {"name": "echo", "port": 80}]}]}})
        route = eventually(lambda: apiserver.list("HTTPRoute", "team-b")[0],
                           lambda r: (r.get("status") or {}).get("parents"), "team-b's route status")
        accepted = [c for c in route["status"]["parents"][0]["conditions"] if c["type"] == "Accepted"]
        assert [(c["status"], c["reason"]) for c in accepted] == [("False", "NotAllowedByListeners")]
        assert httpx.get(f"http://127.0.0.1:{proxy}/", headers={"Host": "team-b.example"}).status_code == 404

        controller.terminate()  # the guide's Ctrl-C
        controller.wait(10)
        run(blocks[10])
        assert not (Path(prefix) / "pids" / "meshway.pid").exists()
    finally:
        if controller and controller.poll() is None:
            controller.terminate()
            controller.wait(10)
        if (Path(prefix) / "pids" / "meshway.pid").exists():
            subprocess.run(["meshway", "stop", "-p", prefix], env=env, capture_output=True, timeout=60)

    # "In the cluster": the deploy/ manifests, applied
    [crds, deploy] = BLOCK.findall(rest)[0].strip().splitlines()
    run(crds)
    out = run(deploy)
    for shown in ("serviceaccount/kong-serviceaccount", "clusterrole.rbac.authorization.k8s.io/meshway-ingress-controller",
                  "deployment.apps/meshway-ingress", "service/kong-proxy", "ingressclass.networking.k8s.io/kong"):
        assert shown in out
    apiserver.stop()


def _substituted(block: str, subs) -> str:
    for old, new in subs:
        block = block.replace(old, new)
    return block
