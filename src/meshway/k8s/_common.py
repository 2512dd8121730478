"""Helpers every translator shares: an object's metadata, the tags naming it on its entities, its ports."""
from __future__ import annotations

from meshway.k8s._annotations import Bad
from meshway.model import ENTITIES

MANAGED_TAG = "managed-by-ingress-controller"


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def tags(obj: dict, kind: str) -> list[str]:
    m = meta(obj)
    """KIC's tags naming the object on each entity made from it (they also trace a refused entity
    back to its object), then the user's own `konghq.com/tags`."""
    out = [f"k8s-name:{m.get('name', '')}", f"k8s-namespace:{m.get('namespace', '')}", f"k8s-kind:{kind}"]
    if m.get("uid"):
        out.append(f"k8s-uid:{m['uid']}")
    user = [t.strip() for t in ((m.get("annotations") or {}).get("konghq.com/tags") or "").split(",")]
    return [*out, MANAGED_TAG, *(t for t in user if t and t not in out)]


def selects(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes LabelSelector: every `matchLabels` pair and every `matchExpressions` requirement
    (In, NotIn, Exists, DoesNotExist) holds. `{}` selects everything; a missing selector or an
    unknown operator selects nothing (the API server would have refused such an object)."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        holds = {"In": lambda: key in labels and labels[key] in values,
                 "NotIn": lambda: key not in labels or labels[key] not in values,
                 "Exists": lambda: key in labels, "DoesNotExist": lambda: key not in labels}.get(op)
        if holds is None or not holds():
            return False
    return True


def namespace_labels(namespaces: dict, name: str) -> dict | None:
    """A namespace's labels with the `kubernetes.io/metadata.name` label kube-apiserver sets on every
    namespace; None when the namespace is not (yet) known."""
    ns = namespaces.get(("", name))
    if ns is None:
        return None
    return {**(meta(ns).get("labels") or {}), "kubernetes.io/metadata.name": name}


def find_port(svc: dict, port, where: str) -> dict:
    ports = (svc.get("spec") or {}).get("ports") or []
    for p in ports:
        if port in (None, "") and len(ports) == 1:
            return p
        if (isinstance(port, int) and p.get("port") == port) or (isinstance(port, str) and p.get("name") == port):
            return p
    raise Bad(where + ".service.port", f"Service {meta(svc).get('name')} has no port {port!r}")


def tagged_document(config: dict) -> dict:
    """The configuration for a node with a database: every entity carries MANAGED_TAG and the
    document names it in `_info.select_tags` (decK's spelling), so that the node replaces exactly the
    controller's entities in one transaction and leaves the user's own ones alone."""
    return {**_with_tag(config), "_info": {"select_tags": [MANAGED_TAG]}}


def _with_tag(value):
    if isinstance(value, list):
        return [_with_tag(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _with_tag(v) if k in ENTITIES else v for k, v in value.items()}
    if "_format_version" not in value and MANAGED_TAG not in (value.get("tags") or []):
        out["tags"] = [*(value.get("tags") or []), MANAGED_TAG]
    return out
