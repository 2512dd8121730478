"""`kubectl apply -f FILE|-` against kmock's EMULATED API server, for the guide's test.

kubectl itself cannot talk to kmock (its discovery fails there), so the guide's `kubectl apply`
commands run this instead: every document is created through the API (POST), or merge-patched
when it exists (409), and reported as kubectl reports it (`kind.group/name created|configured`).
Anything else than `apply -f` is refused, so the guide cannot use a command the test does not run.
"""
from __future__ import annotations

import os
import sys

import httpx
import yaml

# kind -> (plural, namespaced)
KINDS = {
    "Namespace": ("namespaces", False), "ServiceAccount": ("serviceaccounts", True),
    "Service": ("services", True), "Secret": ("secrets", True), "Deployment": ("deployments", True),
    "ClusterRole": ("clusterroles", False), "ClusterRoleBinding": ("clusterrolebindings", False),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "IngressClass": ("ingressclasses", False), "Ingress": ("ingresses", True),
    "KongPlugin": ("kongplugins", True), "KongClusterPlugin": ("kongclusterplugins", False),
    "KongConsumer": ("kongconsumers", True), "KongIngress": ("kongingresses", True),
    "KongUpstreamPolicy": ("kongupstreampolicies", True),
    "KongConsumerGroup": ("kongconsumergroups", True),
    "GatewayClass": ("gatewayclasses", False), "Gateway": ("gateways", True), "HTTPRoute": ("httproutes", True),
}


def path(doc: dict) -> str:
    plural, namespaced = KINDS[doc["kind"]]
    api_version = doc["apiVersion"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced:
        return f"{base}/namespaces/{doc['metadata'].get('namespace') or 'default'}/{plural}"
    return f"{base}/{plural}"


def apply(text: str, client: httpx.Client) -> None:
    for doc in (d for d in yaml.safe_load_all(text) if d):
        group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
        shown = f"{doc['kind'].lower()}{'.' + group if group else ''}/{doc['metadata']['name']}"
        response = client.post(path(doc), json=doc)
        if response.status_code == 409:
            response = client.patch(f"{path(doc)}/{doc['metadata']['name']}", json=doc,
                                    headers={"Content-Type": "application/merge-patch+json"})
            verb = "configured"
        else:
            verb = "created"
        if response.status_code >= 300:
            sys.exit(f"error: {shown}: {response.status_code} {response.text[:300]}")
        print(f"{shown} {verb}")


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[:2] != ["apply", "-f"]:
        sys.exit(f"kubectl_for_test: only `apply -f FILE|-` is emulated, not {' '.join(argv)}")
    text = sys.stdin.read() if argv[2] == "-" else open(argv[2]).read()
    with httpx.Client(base_url=os.environ["KMOCK_URL"], timeout=10) as client:
        apply(text, client)


if __name__ == "__main__":
    main(sys.argv[1:])
