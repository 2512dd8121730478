"""Where a call for a service goes: the zone, the instances' subset, and the path through mesh
gateways, from the config entries (Consul's discovery chain, reduced to what zones need).

- By default a service resolves to the caller's own datacenter ("by default the service mesh
  will always resolve to the local datacenter").
- A `service-resolver`'s `Redirect` replaces the target (service, subset, datacenter); the
  redirected service's own resolver applies in turn, a redirect already applied is not applied
  again, and a loop is an error. `DefaultSubset` applies when no subset was asked for.
- `Failover` (for the target's subset, else `*`) lists where to go when the target has no healthy
  instance: `Datacenters` in order, or `Targets`, or another `Service`/`ServiceSubset`. The first
  with a healthy instance wins, so traffic comes back as soon as the primary has one again
  (consul#9811: a failover that never fires is what users hit; here it is a pure decision on
  the health counts, taken per call).
- The gateway mode, first set wins: the upstream's own `mesh_gateway`, the caller's
  service-defaults (`UpstreamConfig.Overrides` for that upstream, `UpstreamConfig.Defaults`, its
  `MeshGateway`), the target's service-defaults `MeshGateway`, proxy-defaults' `MeshGateway`; none
  set means `none`. It only matters for a target in another datacenter: `local` goes through the
  caller's zone's gateway then the target zone's gateway, `remote` straight to the target zone's
  gateway, `none` straight to the instances.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping

from ._sni import service_sni


@dataclasses.dataclass(frozen=True)
class Target:
    service: str
    datacenter: str
    subset: str = ""


@dataclasses.dataclass(frozen=True)
class Route:
    """The decision for one call: where, by which mode and hops, with which SNI name."""

    target: Target
    mode: str
    hops: tuple[str, ...]
    sni: str
    failover: bool = False
    error: str | None = None


class ResolveError(ValueError):
    pass


class Entries:
    """Config entries indexed for resolution (a snapshot's `config_entries`)."""

    def __init__(self, entries: Iterable[Mapping[str, Any]]) -> None:
        self.by = {(e["Kind"], e["Name"]): e for e in entries}

    def get(self, kind: str, name: str) -> Mapping[str, Any]:
        return self.by.get((kind, name)) or {}


def resolve(service: str, *, local_dc: str, entries: Entries, healthy: Callable[[Target], int], trust_domain: str,
            caller: str = "", upstream_mode: str = "") -> Route:
    primary = _redirected(service, local_dc, entries)
    resolver = entries.get("service-resolver", primary.service)
    if not primary.subset and resolver.get("DefaultSubset"):
        primary = dataclasses.replace(primary, subset=resolver["DefaultSubset"])
    chosen, failed_over = primary, False
    if healthy(primary) <= 0:
        for candidate in _failover_targets(primary, resolver, local_dc):
            if candidate != primary and healthy(candidate) > 0:
                chosen, failed_over = candidate, True
                break
    mode = gateway_mode(service, chosen.service, entries, caller=caller, upstream_mode=upstream_mode)
    error = None if failed_over or healthy(primary) > 0 else _no_instances(primary)
    sni = service_sni(chosen.service, chosen.datacenter, trust_domain, subset=chosen.subset)
    return Route(chosen, mode, _hops(chosen, local_dc, mode), sni, failed_over, error)


def _no_instances(target: Target) -> str:
    subset = f" (subset {target.subset})" if target.subset else ""
    return f"no healthy instance of {target.service}{subset} in datacenter {target.datacenter}"


def _redirected(service: str, local_dc: str, entries: Entries) -> Target:
    target, seen = Target(service, local_dc), [Target(service, local_dc)]
    for _ in range(64):  # bounded: a chain longer than the number of resolvers is a loop anyway
        redirect = entries.get("service-resolver", target.service).get("Redirect")
        if not redirect:
            return target
        new = Target(redirect.get("Service") or target.service, redirect.get("Datacenter") or target.datacenter,
                     redirect.get("ServiceSubset") or "")
        if new == target or (new.service == target.service and new.datacenter == target.datacenter
                             and not new.subset):
            return target  # the redirect is already applied
        if new in seen:
            raise ResolveError("detected circular resolver redirect: "
                               + " -> ".join(f"{t.service}@{t.datacenter}" for t in [*seen, new]))
        seen.append(new)
        target = new
    raise ResolveError(f"resolver redirects of {service} do not end")


def _failover_targets(primary: Target, resolver: Mapping[str, Any], local_dc: str) -> list[Target]:
    failover = resolver.get("Failover") or {}
    rule = failover.get(primary.subset) if primary.subset in failover else failover.get("*")
    if not rule:
        return []
    if rule.get("Targets"):
        return [Target(t.get("Service") or primary.service, t.get("Datacenter") or primary.datacenter,
                       t.get("ServiceSubset") or ("" if t.get("Service") not in (None, "", primary.service)
                                                  else primary.subset))
                for t in rule["Targets"]]
    service = rule.get("Service") or primary.service
    subset = rule.get("ServiceSubset") or ("" if service != primary.service else primary.subset)
    datacenters = rule.get("Datacenters") or [primary.datacenter]
    return [Target(service, dc, subset) for dc in datacenters]


def gateway_mode(called: str, target_service: str, entries: Entries, *, caller: str = "",
                 upstream_mode: str = "") -> str:
    caller_defaults = entries.get("service-defaults", caller) if caller else {}
    upstreams = caller_defaults.get("UpstreamConfig") or {}
    override = next((o for o in upstreams.get("Overrides") or () if o.get("Name") == called), {})
    for mode in (upstream_mode,
                 (override.get("MeshGateway") or {}).get("Mode"),
                 ((upstreams.get("Defaults") or {}).get("MeshGateway") or {}).get("Mode"),
                 (caller_defaults.get("MeshGateway") or {}).get("Mode"),
                 (entries.get("service-defaults", target_service).get("MeshGateway") or {}).get("Mode"),
                 (entries.get("proxy-defaults", "global").get("MeshGateway") or {}).get("Mode")):
        if mode:
            return mode
    return "none"


def _hops(target: Target, local_dc: str, mode: str) -> tuple[str, ...]:
    end = f"{target.service}@{target.datacenter}"
    if target.datacenter == local_dc or mode == "none":
        return (end,)
    if mode == "remote":
        return (f"gateway@{target.datacenter}", end)
    return (f"gateway@{local_dc}", f"gateway@{target.datacenter}", end)
