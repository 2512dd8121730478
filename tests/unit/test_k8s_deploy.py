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
    assert len(crds) == 5
