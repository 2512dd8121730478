"""Gateway API (gateway.networking.k8s.io/v1) as KIC translates it with its traditional router.

Theory of operation (KIC's `translator/subtranslator/httproute.go`, `translate_upstreams.go`):
1. A GatewayClass is ours when `spec.controllerName` is our controller name
   (`konghq.com/kic-gateway-controller` by default, KIC's); a Gateway is ours when its class is.
2. An HTTPRoute attaches to each `parentRefs` Gateway of ours whose listeners (by `sectionName`,
   `port`) speak HTTP or HTTPS, allow the route's namespace (`allowedRoutes.namespaces.from`: Same,
   the default, All, or Selector: the route's Namespace labels match `namespaces.selector`) and kind, and share a hostname with it. Each parent gets its own result
   (Accepted, or the reason it was not), which `_status` writes back.
3. Rules sharing the same backendRefs share one Kong service named from them,
   `httproute.<ns>.svc.<ns>.<svc>.<port>[.<weight>]_...` (KIC's CombinedServicesFromDifferentHTTPRoutes),
   whose upstream has every backend's endpoints, each backend's weight split over its endpoints.
4. Each match is one Kong route `httproute.<ns>.<route>.<rule>.<match>`: Exact -> `~/p$`,
   PathPrefix -> `~/p$` and `/p/`, RegularExpression -> `~re`; headers (Exact, or RegularExpression
   as Kong's `~*`); method. Query parameter matches need KIC's expression router: refused, as KIC
   refuses them with its traditional router.
5. Filters become plugins on the rule's routes: RequestHeaderModifier -> request-transformer,
   ResponseHeaderModifier -> response-transformer, RequestRedirect -> request-termination plus a
   Location header, URLRewrite -> request-transformer `replace.uri` (prefix rewrites capture the rest
   of the path), ExtensionRef to a KongPlugin -> that plugin.
A rule whose backends all fail to resolve answers 500, as the Gateway API asks and KIC does.
"""
from __future__ import annotations

import hashlib

from meshway.k8s._annotations import Bad
from meshway.k8s._common import namespace_labels, selects

GROUP = "gateway.networking.k8s.io"
DEFAULT_CONTROLLER = "konghq.com/kic-gateway-controller"
HTTP_LISTENERS = {"HTTP": "http", "HTTPS": "https"}
# listener protocol -> the route kinds it takes
LISTENER_KINDS = {"HTTP": ("HTTPRoute", "GRPCRoute"), "HTTPS": ("HTTPRoute", "GRPCRoute"), "TCP": ("TCPRoute",),
                  "UDP": ("UDPRoute",), "TLS": ("TLSRoute",)}
MAX_SERVICE_NAME = 511


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _key(obj: dict) -> tuple[str, str]:
    return _meta(obj).get("namespace") or "", _meta(obj).get("name") or ""


def our_gateways(objects, controller: str) -> dict:
    classes = {name for (_, name), gc in objects.gateway_classes.items()
               if (gc.get("spec") or {}).get("controllerName") == controller}
    return {k: gw for k, gw in objects.gateways.items() if (gw.get("spec") or {}).get("gatewayClassName") in classes}


def _host_match(a: str, b: str) -> bool:
    """Gateway API hostname intersection: equal, or one's wildcard covers the other."""
    if not a or not b or a == b:
        return True
    for wild, other in ((a, b), (b, a)):
        if wild.startswith("*.") and other.endswith(wild[1:]):
            return True
    return False


def attach(route: dict, gateways: dict, kind: str = "HTTPRoute",
           namespaces: dict | None = None) -> tuple[list[dict], list[dict]]:
    """(listeners the route attaches to, status of each parentRef that names a Gateway of ours);
    `namespaces`: the cluster's Namespaces by ("", name), for listeners that select by labels."""
    ns, _ = _key(route)
    hostnames = (route.get("spec") or {}).get("hostnames") or []
    listeners, statuses = [], []
    for ref in (route.get("spec") or {}).get("parentRefs") or []:
        if (ref.get("group") or GROUP) != GROUP or (ref.get("kind") or "Gateway") != "Gateway":
            continue
        gw_ns = ref.get("namespace") or ns
        gateway = gateways.get((gw_ns, ref.get("name")))
        if gateway is None:
            continue  # not ours: another controller's business
        reason, found = _listeners_for(ref, gateway, ns, hostnames, kind, namespaces or {})
        statuses.append({"ref": ref, "namespace": gw_ns, "accepted": not reason, "reason": reason or "Accepted",
                         "listeners": [lst.get("name") for lst in found]})
        listeners += found
    return listeners, statuses


def _listeners_for(ref: dict, gateway: dict, route_ns: str, hostnames: list[str],
                   kind: str, namespaces: dict) -> tuple[str, list[dict]]:
    gw_ns, _ = _key(gateway)
    candidates = [lst for lst in (gateway.get("spec") or {}).get("listeners") or []
                  if (not ref.get("sectionName") or lst.get("name") == ref["sectionName"])
                  and (not ref.get("port") or lst.get("port") == ref["port"])]
    if not candidates:
        return "NoMatchingParent", []
    allowed = [lst for lst in candidates
               if kind in LISTENER_KINDS.get(lst.get("protocol"), ()) and _allows(lst, gw_ns, route_ns, kind, namespaces)]
    if not allowed:
        return "NotAllowedByListeners", []
    matching = [lst for lst in allowed
                if not hostnames or any(_host_match(lst.get("hostname") or "", h) for h in hostnames)]
    if not matching:
        return "NoMatchingListenerHostname", []
    return "", matching


def _allows(listener: dict, gw_ns: str, route_ns: str, kind: str, namespaces: dict) -> bool:
    allowed = listener.get("allowedRoutes") or {}
    kinds = allowed.get("kinds")
    if kinds and not any(k.get("kind") == kind and (k.get("group") or GROUP) == GROUP for k in kinds):
        return False
    source = (allowed.get("namespaces") or {}).get("from") or "Same"
    if source == "Selector":  # a namespace not listed (yet) is not selected
        labels = namespace_labels(namespaces, route_ns)
        return labels is not None and selects((allowed.get("namespaces") or {}).get("selector"), labels)
    return source == "All" or (source == "Same" and gw_ns == route_ns)


def route_hosts(route: dict, listeners: list[dict]) -> list[str]:
    """The route's hostnames; without any, its listeners' hostnames (a listener hostname limits
    what the route serves in the Gateway API; KIC leaves such a route open to every host)."""
    hostnames = (route.get("spec") or {}).get("hostnames") or []
    if hostnames:
        return list(hostnames)
    names = sorted({lst["hostname"] for lst in listeners if lst.get("hostname")})
    return [] if any(not lst.get("hostname") for lst in listeners) else names


def protocols(listeners: list[dict]) -> list[str]:
    return sorted({HTTP_LISTENERS[lst["protocol"]] for lst in listeners})


def service_name(ns: str, backend_refs: list[dict]) -> str:
    """KIC's name for the Kong service of a set of backendRefs."""
    if not backend_refs:
        return f"httproute.{ns}.svc._"
    names = []
    for ref in backend_refs:
        name = f"{ref.get('namespace') or ns}.{ref.get('name')}"
        if ref.get("port") is not None:
            name += f".{ref['port']}"
        if ref.get("weight") is not None:
            name += f".{ref['weight']}"
        names.append(name)
    names.sort()
    name = f"httproute.{ns}.svc.{'_'.join(names)}"
    if len(name) > MAX_SERVICE_NAME:
        name = f"httproute.{ns}.svc.{names[0]}_combined.{hashlib.sha256(name.encode()).hexdigest()}"
    return name


def match_fields(match: dict, where: str) -> dict:
    """Route fields (paths, methods, headers) of one HTTPRouteMatch."""
    if match.get("queryParams"):
        raise Bad(where + ".queryParams", "query param matches are not supported with the traditional router")
    out: dict = {}
    path = match.get("path")
    if path:
        out["paths"] = _paths(path.get("type") or "PathPrefix", path.get("value") or "/", where + ".path")
    if match.get("method"):
        out["methods"] = [match["method"]]
    headers: dict = {}
    for i, header in enumerate(match.get("headers") or []):
        name, kind = header.get("name") or "", header.get("type") or "Exact"
        if name.lower() in {h.lower() for h in headers}:
            raise Bad(f"{where}.headers[{i}]", f"multiple header matches for the same header are not allowed: {name}")
        if kind not in ("Exact", "RegularExpression"):
            raise Bad(f"{where}.headers[{i}].type", f"unknown/unsupported header match type: {kind}")
        headers[name] = [("~*" if kind == "RegularExpression" else "") + (header.get("value") or "")]
    if headers:
        out["headers"] = headers
    return out


def _paths(kind: str, value: str, where: str) -> list[str]:
    if kind == "Exact":
        return [f"~{value}$"]
    if kind == "PathPrefix":
        return [f"~{value}$", value if value.endswith("/") else value + "/"] if value != "/" else ["/"]
    if kind == "RegularExpression":
        return [f"~{value}"]
    raise Bad(where + ".type", f"unknown path match type {kind!r}")
