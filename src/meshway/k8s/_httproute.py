"""One HTTPRoute -> Kong services, upstreams, routes and plugins (rules in `_gateway`).

The route is staged whole: a field that does not translate leaves the HTTPRoute out with that
field named, and nothing of it reaches the snapshot.
"""
from __future__ import annotations

import posixpath

from meshway.k8s import _annotations as ann
from meshway.k8s import _gateway as gw
from meshway.k8s import _grants
from meshway.k8s import _upstreams
from meshway.k8s._annotations import Bad

TIMEOUT_MS = 60000


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def translate_route(state, route: dict, listeners: list[dict], tags: list[str]) -> list[tuple]:
    """(service, upstream, kong route, route plugins) for every match of every rule; Bad names the field."""
    ns, name = gw._key(route)
    spec = route.get("spec") or {}
    rules = spec.get("rules") or []
    if not rules:
        raise Bad("spec.rules", "no rules provided")
    annotation_plugins = state.plugins.for_referrer(route, _grants.kind_of(tags))
    # KIC applies the route annotations (strip-path, methods, protocols...) to HTTPRoute routes too
    overrides = ann.route_fields(_meta(route).get("annotations") or {})
    aliases = ann.host_aliases(_meta(route).get("annotations") or {})
    hosts, protocols = gw.route_hosts(route, listeners), gw.protocols(listeners)
    staged = []
    for i, rule in enumerate(rules):
        where = f"spec.rules[{i}]"
        service, upstream = _service(state, route, rule, where, tags)
        matches = rule.get("matches") or [{}]
        for j, match in enumerate(matches):
            fields = gw.match_fields(match, f"{where}.matches[{j}]")
            kong_route = {"name": f"httproute.{ns}.{name}.{i}.{j}", "protocols": protocols, **fields, **overrides,
                          "tags": tags}
            if hosts:
                kong_route["hosts"] = [*hosts, *(a for a in aliases if a not in hosts)]
            plugins = _filters(state, route, rule.get("filters") or [], match, kong_route, where, tags)
            if not {"paths", "hosts", "methods", "headers"} & set(kong_route):
                kong_route["paths"] = ["/"]
            staged.append((service, upstream, kong_route, annotation_plugins + plugins))
    return staged


def _service(state, route: dict, rule: dict, where: str, tags: list[str], name: str = "",
             protocol: str = "http") -> tuple[dict, dict]:
    ns = gw._key(route)[0]
    refs = rule.get("backendRefs") or []
    name = name or gw.service_name(ns, refs)
    targets: dict[str, int] = {}
    resolved: list[tuple[dict, str]] = []
    for k, ref in enumerate(refs):
        found = _backend_targets(state, ns, _grants.kind_of(tags), ref, f"{where}.backendRefs[{k}]")
        if found is None:
            continue
        resolved.append((state.objects.services[(ref.get("namespace") or ns, ref.get("name"))],
                         f"{where}.backendRefs[{k}]"))
        weight = ref.get("weight")
        for target in found:  # KIC: a backend's weight is split over its endpoints; 0 disables them
            share = 100 if weight is None else (0 if weight == 0 else max(1, weight // len(found)))
            targets[target] = targets.get(target, 0) + share
    timeout = _timeout(rule, where)
    service = {"name": name, "host": name, "port": 80, "protocol": protocol, "retries": 5,
               "connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout, "tags": tags}
    upstream = {"name": name, "targets": [{"target": t, "weight": w} for t, w in sorted(targets.items())],
                "tags": tags}
    if refs and not resolved:
        service["_terminate"] = True  # every backend failed: the rule answers 500 (Gateway API, KIC)
    if protocol in ("http", "https"):
        service["path"] = "/"
    _backend_annotations(state, service, upstream, resolved)
    return service, upstream


def _backend_annotations(state, service: dict, upstream: dict, backends: list[tuple[dict, str]]) -> None:
    """KIC applies the backend Services' own annotations to the Kong service made for them
    (protocol, path, timeouts, retries, host-header), their KongIngress / KongUpstreamPolicy to its
    upstream, and their `konghq.com/plugins` to it; a backend whose annotations fail leaves the
    route out, naming the backendRef and the Service's field."""
    plugins = []
    for svc, where in backends:
        meta = svc.get("metadata") or {}
        try:
            fields = ann.service_fields(meta.get("annotations") or {})
            upstream.update(_upstreams.overrides(svc, state.objects))
            plugins += state.plugins.for_referrer(svc, "Service")
            fields.update(state.upstream_tls(svc))
        except Bad as bad:
            raise Bad(where, f"Service {meta.get('namespace')}/{meta.get('name')}: {bad.field}: {bad.reason}") from None
        host_header = fields.pop("host_header", None)
        if host_header:
            upstream["host_header"] = host_header
        service.update(fields)
    service["_plugins"] = plugins


def _backend_targets(state, ns: str, kind: str, ref: dict, where: str) -> list[str] | None:
    """The endpoints of one backendRef, or None when it does not resolve (recorded for the status)."""
    if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
        state.unresolved(where, "InvalidKind", f"{ref.get('kind')} is not a Service")
        return None
    target_ns = ref.get("namespace") or ns
    if target_ns != ns and not _grants.permitted(state.objects, kind, ns, "Service", target_ns, ref.get("name")):
        state.unresolved(where, "RefNotPermitted", f"no ReferenceGrant in namespace {target_ns!r} lets {kind}s of "
                                                   f"{ns!r} use Service {ref.get('name')}")
        return None
    if ref.get("port") is None:
        state.unresolved(where, "UnsupportedValue", "port is required for a Service backend")
        return None
    try:
        return state.service_targets(target_ns, ref.get("name"), ref["port"], where)
    except Bad as bad:
        state.unresolved(where, "BackendNotFound", bad.reason)
        return None


def _timeout(rule: dict, where: str) -> int:
    value = (rule.get("timeouts") or {}).get("backendRequest")
    if not value:
        return TIMEOUT_MS
    units = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000}
    for unit in ("ms", "h", "m", "s"):
        if value.endswith(unit) and value[:-len(unit)].isdigit():
            return int(value[:-len(unit)]) * units[unit] or TIMEOUT_MS
    raise Bad(where + ".timeouts.backendRequest", f"not a duration: {value!r}")


def _filters(state, route, filters: list[dict], match: dict, kong_route: dict, where: str, tags) -> list:
    """(plugin key, template) pairs the rule's filters make for one of its routes."""
    request: dict = {}
    response: dict = {}
    out = []
    match_path = ((match.get("path") or {}).get("value")) or "/"
    for k, f in enumerate(filters):
        kind, at = f.get("type"), f"{where}.filters[{k}]"
        if kind == "RequestHeaderModifier":
            _headers(request, f.get("requestHeaderModifier") or {})
        elif kind == "ResponseHeaderModifier":
            _headers(response, f.get("responseHeaderModifier") or {})
        elif kind == "RequestRedirect":
            status, location = _redirect(f.get("requestRedirect") or {}, match_path)
            out.append(_generated("request-termination", {"status_code": status}, tags, kong_route, k))
            response.setdefault("add", {}).setdefault("headers", []).append(f"Location:{location}")
        elif kind == "URLRewrite":
            _rewrite(request, f.get("urlRewrite") or {}, match_path, kong_route, at)
        elif kind == "ExtensionRef":
            ref = f.get("extensionRef") or {}
            if ref.get("group") != "configuration.konghq.com" or ref.get("kind") != "KongPlugin":
                raise Bad(at + ".extensionRef", f"plugin {ref.get('group')}/{ref.get('kind')} unsupported")
            key, template, problem = state.plugins.lookup(gw._key(route)[0], ref.get("name"))
            if problem:
                raise Bad(at + ".extensionRef", problem)
            out.append((key, template))
        else:
            raise Bad(at + ".type", f"httpFilter {kind} unsupported")
    if request:
        out.append(_generated("request-transformer", request, tags, kong_route, "req"))
    if response:
        out.append(_generated("response-transformer", response, tags, kong_route, "resp"))
    return out


def _generated(name: str, config: dict, tags, kong_route: dict, tag) -> tuple:
    """A plugin made from a filter: its key is per route so that bind() keeps one per route."""
    return ("HTTPRouteFilter", kong_route["name"], f"{name}.{tag}"), {"name": name, "config": config, "tags": tags}


def _headers(config: dict, modifier: dict) -> None:
    """KIC: set -> replace and add (so it is there either way), add -> append, remove -> remove."""
    sets = [f"{h['name']}:{h['value']}" for h in modifier.get("set") or []]
    if sets:
        config.setdefault("replace", {}).setdefault("headers", []).extend(sets)
        config.setdefault("add", {}).setdefault("headers", []).extend(sets)
    adds = [f"{h['name']}:{h['value']}" for h in modifier.get("add") or []]
    if adds:
        config.setdefault("append", {}).setdefault("headers", []).extend(adds)
    if modifier.get("remove"):
        config.setdefault("remove", {}).setdefault("headers", []).extend(modifier["remove"])


def _redirect(redirect: dict, path: str) -> tuple[int, str]:
    """KIC's request-termination redirect: the Location is built once, from the match's path."""
    modifier = redirect.get("path") or {}
    if modifier.get("type") == "ReplaceFullPath" and modifier.get("replaceFullPath"):
        path = modifier["replaceFullPath"]
    location = path
    if redirect.get("hostname"):
        port = f":{redirect['port']}" if redirect.get("port") else ""
        location = f"{redirect.get('scheme') or 'http'}://{posixpath.join(redirect['hostname'] + port, path.lstrip('/'))}"
    return int(redirect.get("statusCode") or 302), location


def _rewrite(config: dict, rewrite: dict, path: str, kong_route: dict, where: str) -> None:
    if not rewrite.get("path") and not rewrite.get("hostname"):
        raise Bad(where + ".urlRewrite", "URLRewrite missing Path and Hostname")
    if rewrite.get("hostname"):
        host = f"host:{rewrite['hostname']}"
        config.setdefault("replace", {}).setdefault("headers", []).append(host)
        config.setdefault("add", {}).setdefault("headers", []).append(host)
    modifier = rewrite.get("path")
    if not modifier:
        return
    if modifier.get("type") == "ReplaceFullPath":
        if modifier.get("replaceFullPath") is None:
            raise Bad(where + ".urlRewrite.path.replaceFullPath", "required for ReplaceFullPath")
        config.setdefault("replace", {})["uri"] = modifier["replaceFullPath"]
    elif modifier.get("type") == "ReplacePrefixMatch":
        config.setdefault("replace", {})["uri"] = _prefix_rewrite(modifier.get("replacePrefixMatch"), path, kong_route)
    else:
        raise Bad(where + ".urlRewrite.path.type", f"unsupported path type {modifier.get('type')}")


def _prefix_rewrite(replacement: str | None, path: str, kong_route: dict) -> str:
    """The matched prefix is replaced: the route's paths capture the rest of the path, and the
    request-transformer puts the replacement before it (KIC's route modifier and template)."""
    replacement = (replacement or "").rstrip("/")
    path = "/" if path in ("", "/") else path.rstrip("/")
    if path == "/":
        kong_route["paths"] = ["~/(.*)"]
        return f"{replacement}/$(uri_captures[1])"
    kong_route["paths"] = [f"~{path}$", f"~{path}(/.*)"]
    return f"{replacement}$(uri_captures[1])" if replacement else '$(uri_captures[1] or "/")'
