"""The manifests in deploy/ match what `meshway ingress-controller` watches and calls."""
from __future__ import annotations

from pathlib import Path

import yaml

from meshway.k8s._controller import CLUSTER_SCOPED, KINDS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def documents(*names: str) -> list[dict]:
    docs = []
    for name in names:
        docs += [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]
    return docs


def test_every_custom_resource_the_controller_watches_has_its_crd():
    crds = {d["metadata"]["name"]: d for d in documents("crds/kong-crds.yaml")}
    for res, _ in KINDS:
        info = res._api_info
        if info.resource.group != "configuration.konghq.com":
            continue
        crd = crds[f"{info.plural}.{info.resource.group}"]
        assert crd["spec"]["names"]["kind"] == info.resource.kind
        assert crd["spec"]["scope"] == ("Cluster" if res in CLUSTER_SCOPED else "Namespaced")
        [version] = crd["spec"]["versions"]
        assert version["name"] == info.resource.version and version["served"] and version["storage"]
    assert len(crds) == 6


def _by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def _granted(role: dict) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_rbac_covers_every_call_the_controller_makes():
    from meshway.k8s._controller import STATUS_OF

    kinds = _by_kind(documents("meshway-dbless.yaml"))
    [role] = kinds["ClusterRole"]
    granted = _granted(role)
    for res, _ in KINDS:  # list + watch of every type it follows
        info = res._api_info
        for verb in ("list", "watch"):
            assert (info.resource.group, info.plural, verb) in granted, (info.plural, verb)
    for status in STATUS_OF.values():  # merge-patch of status subresources
        info = status._api_info
        assert (info.resource.group, f"{info.plural}/status", "patch") in granted, info.plural
    assert ("", "events", "create") in granted
    # the role is bound to the service account the pod runs as
    [binding] = kinds["ClusterRoleBinding"]
    [deployment] = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert {"kind": "ServiceAccount", "name": pod["serviceAccountName"],
            "namespace": deployment["metadata"]["namespace"]} in binding["subjects"]
    assert any(sa["metadata"]["name"] == pod["serviceAccountName"] for sa in kinds["ServiceAccount"])


def test_the_pod_runs_a_db_less_node_and_the_controller_pointed_at_it():
    from meshway.cli import build_parser
    from meshway.settings import load_settings

    kinds = _by_kind(documents("meshway-dbless.yaml"))
    [deployment] = kinds["Deployment"]
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    proxy, controller = containers["proxy"], containers["ingress-controller"]
    # the node's settings are real settings, DB-less, admin on the pod's loopback
    settings = load_settings(env={e["name"]: e["value"] for e in proxy["env"]})
    assert settings.values["database"] == "off"
    [admin] = settings.values["admin_listen"]
    assert admin.host == "127.0.0.1"
    assert build_parser().parse_args(proxy["command"][1:]).foreground
    # the controller's flags parse, and point at that admin listener and at the proxy Service
    args = build_parser().parse_args(controller["command"][1:])
    assert args.kong_admin_url == f"http://localhost:{admin.port}"
    ns, _, name = args.publish_service.partition("/")
    [svc] = kinds["Service"]
    assert (svc["metadata"]["namespace"], svc["metadata"]["name"]) == (ns, name)
    ports = {p.port for p in settings.values["proxy_listen"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    assert svc["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # the IngressClass the controller serves, with KIC's controller string
    [ingress_class] = kinds["IngressClass"]
    assert ingress_class["metadata"]["name"] == args.ingress_class
    assert ingress_class["spec"]["controller"] == "ingress-controllers.konghq.com/kong"
    status_port = settings.values["status_listen"][0].port
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/status", "port": status_port}
    # the controller's probes: ready once a configuration reached the node
    probe_port = int(args.health_probe_bind_address.rpartition(":")[2])
    assert controller["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": probe_port}
    assert controller["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": probe_port}
