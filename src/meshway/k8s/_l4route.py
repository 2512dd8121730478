"""TCPRoute, UDPRoute and TLSRoute (gateway.networking.k8s.io/v1alpha2) as KIC translates them
(`translator/translate_tcproute.go`, `translate_udproute.go`, `translate_tlsroute.go`,
`translate_routes_helpers.go`):

- one service per rule, `tcproute.<ns>.<name>.<rule>` / `tlsroute.<ns>.<name>.<rule>`, protocol
  `tcp`, its upstream the rule's weighted backends;
- one route per rule, `<kind>.<ns>.<name>.<rule>.0`: a TCPRoute's on the ports of the TCP listeners
  it attaches to (`destinations`), protocol `tcp`; a UDPRoute's the same with `udp` (service and route,
  `udproute.<ns>.<name>.<rule>`; the node needs `stream_listen = ... udp` on those ports); a TLSRoute's on its hostnames (`snis`, required),
  protocol `tls_passthrough` behind a listener in `Passthrough` mode, else `tls` (meshway
  terminates TLS with the listener's certificate).
The node must listen on those ports (`stream_listen`), as Kong's must.
"""
from __future__ import annotations

from meshway.k8s import _gateway as gw
from meshway.k8s import _grants
from meshway.k8s import _httproute
from meshway.k8s._annotations import Bad


def translate_tcp_route(state, route: dict, listeners: list[dict], tags: list[str]) -> list[tuple]:
    ports = sorted({lst["port"] for lst in listeners if lst.get("port")})
    return _rules(state, route, "tcproute", tags, {"protocols": ["tcp"],
                                                  "destinations": [{"port": p} for p in ports]})


def translate_udp_route(state, route: dict, listeners: list[dict], tags: list[str]) -> list[tuple]:
    ports = sorted({lst["port"] for lst in listeners if lst.get("port")})
    return _rules(state, route, "udproute", tags, {"protocols": ["udp"],
                                                  "destinations": [{"port": p} for p in ports]}, protocol="udp")


def translate_tls_route(state, route: dict, listeners: list[dict], tags: list[str]) -> list[tuple]:
    hostnames = (route.get("spec") or {}).get("hostnames") or []
    if not hostnames:
        raise Bad("spec.hostnames", "no hostnames provided")
    passthrough = any((lst.get("tls") or {}).get("mode") == "Passthrough" for lst in listeners)
    return _rules(state, route, "tlsroute", tags, {"protocols": ["tls_passthrough" if passthrough else "tls"],
                                                  "snis": list(hostnames)})


def _rules(state, route: dict, prefix: str, tags: list[str], fields: dict, protocol: str = "tcp") -> list[tuple]:
    ns, name = gw._key(route)
    rules = (route.get("spec") or {}).get("rules") or []
    if not rules:
        raise Bad("spec.rules", "no rules provided")
    plugins = state.plugins.for_referrer(route, _grants.kind_of(tags))
    staged = []
    for i, rule in enumerate(rules):
        where = f"spec.rules[{i}]"
        if not rule.get("backendRefs"):
            raise Bad(where + ".backendRefs", "no backendRefs provided")
        service, upstream = _httproute._service(state, route, rule, where, tags, name=f"{prefix}.{ns}.{name}.{i}",
                                                protocol=protocol)
        staged.append((service, upstream, {"name": f"{prefix}.{ns}.{name}.{i}.0", **fields, "tags": tags}, plugins))
    return staged
