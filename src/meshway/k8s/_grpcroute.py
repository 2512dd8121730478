"""One GRPCRoute -> Kong service and routes, as KIC's traditional router translates it
(`translator/translate_grpcroute.go`, `subtranslator/grpcroute.go`):

- one service per rule, `grpcroute.<ns>.<name>.<rule>`, whose protocol is `grpc` when the route
  attaches to an HTTP listener, else `grpcs` (KIC's choice; `konghq.com/protocol` is not read);
- one route per match, `grpcroute.<ns>.<name>.<rule>.<match>`, protocols `grpc` / `grpcs` by the
  listeners, path `~/<service>/<method>` (Exact: a missing service is `.+`, a missing method
  empty; RegularExpression: both default to `.+`), header matches, the route's hostnames (or its
  listeners'); a rule without matches gets one route on its hostnames, or `/`.
Filters are refused (KIC's traditional router ignores them silently).
"""
from __future__ import annotations

from meshway.k8s import _gateway as gw
from meshway.k8s import _grants
from meshway.k8s import _httproute
from meshway.k8s._annotations import Bad

GRPC = {"http": "grpc", "https": "grpcs"}


def translate_route(state, route: dict, listeners: list[dict], tags: list[str]) -> list[tuple]:
    ns, name = gw._key(route)
    rules = (route.get("spec") or {}).get("rules") or []
    if not rules:
        raise Bad("spec.rules", "no rules provided")
    plugins = state.plugins.for_referrer(route, _grants.kind_of(tags))
    protocols = [GRPC[p] for p in gw.protocols(listeners)]
    hosts = gw.route_hosts(route, listeners)
    staged = []
    for i, rule in enumerate(rules):
        where = f"spec.rules[{i}]"
        if rule.get("filters"):
            raise Bad(where + ".filters", "GRPCRoute filters are not supported")
        service, upstream = _httproute._service(state, route, rule, where, tags, name=f"grpcroute.{ns}.{name}.{i}",
                                                protocol="grpc" if "grpc" in protocols else "grpcs")
        for j, match in enumerate(rule.get("matches") or [{}]):
            kong_route = {"name": f"grpcroute.{ns}.{name}.{i}.{j}", "protocols": protocols, "strip_path": False,
                          "preserve_host": True, **_match(match, f"{where}.matches[{j}]"), "tags": tags}
            if hosts:
                kong_route["hosts"] = hosts
            if not {"paths", "hosts", "headers"} & set(kong_route):
                kong_route["paths"] = ["/"]
            staged.append((service, upstream, kong_route, plugins))
    return staged


def _match(match: dict, where: str) -> dict:
    out: dict = {}
    method = match.get("method")
    if method:
        kind = method.get("type") or "Exact"
        if kind not in ("Exact", "RegularExpression"):
            raise Bad(where + ".method.type", f"unknown method match type {kind!r}")
        default_method = ".+" if kind == "RegularExpression" else ""
        out["paths"] = [f"~/{method.get('service') or '.+'}/{method.get('method') or default_method}"]
    headers = gw.match_fields({"headers": match.get("headers") or []}, where).get("headers")
    if headers:
        out["headers"] = headers
    return out
