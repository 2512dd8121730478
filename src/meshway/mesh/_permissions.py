"""Kuma's `MeshTrafficPermission`: the resource, its merging, and the per-inbound decision.

Rules (Kuma 2.x `pkg/plugins/policies/meshtrafficpermission`, docs "policy merging"):
- A policy selects data plane inbounds with `spec.targetRef` (absent = `Mesh`): `Mesh`,
  `MeshSubset` (tags), `MeshService` (name = `kuma.io/service`), `MeshServiceSubset` (name +
  tags), `Dataplane` (all, `labels`, `name`, `sectionName` = an inbound's name or port).
- `spec.from[]` entries select clients with their own `targetRef` (`Mesh`, `MeshSubset`,
  `MeshService`, `MeshServiceSubset`) and give `default.action` Allow, Deny or
  AllowWithShadowDeny.
- Consul's `service-intentions` come in as policies whose `from` entries carry a `precedence`
  (meshway.zones._intentions): they rank above every MeshTrafficPermission, by precedence.
- Merging, for one inbound and one client: of every `from` entry (of every policy selecting
  the inbound) that matches the client, the one with the greatest key wins, the key being
  (how specific its `from` selector is, how specific the policy's `targetRef` is, the policy
  name, its position in `from[]`). So a more specific target wins, ties go by name order (the
  name that sorts first wins, as Kuma's `CompareByDisplayName`), a later `from` entry
  overrides an earlier one, and a specific Deny is never shadowed by a
  broader Allow from another policy (kuma#16873).
- Legacy `TrafficPermission` (sources/destinations) applies to an inbound no
  MeshTrafficPermission selects (Kuma: the new policy takes over where it applies), with Kuma's
  single-best-policy selection (`_compile_legacy`).
- No matching entry: Deny (with mTLS on, Kuma installs deny rules when nothing allows).
  With mTLS off nothing here applies (the caller does not compile permissions at all).
- A client is known by the URIs of its certificate: `spiffe://<mesh>/<service>` and
  `kuma://<tag>/<value>`; a client of another mesh matches nothing.
- Compiled once per data plane at config time (`compile_inbound`); the check on a connection
  is a dict lookup per client identity (`InboundPermissions.decide`, memoized).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterable


ALLOW, DENY, SHADOW = "Allow", "Deny", "AllowWithShadowDeny"
ACTIONS = (ALLOW, DENY, SHADOW)
KIND = "MeshTrafficPermission"
LEGACY = "TrafficPermission"  # Kuma 1.x's sources/destinations form (`_compile_legacy`)
SERVICE_TAG = "kuma.io/service"
_log = logging.getLogger("meshway.mesh")
_MEMO_MAX = 4096  # distinct client identities remembered per inbound (certificates rotate)


# ---- selection ------------------------------------------------------------------------------------
def _top_specificity(ref: dict | None) -> int:
    """Kuma's order of top-level targets: Mesh < MeshSubset < MeshService < MeshServiceSubset;
    Dataplane: all < with labels < one inbound < by name."""
    ref = ref or {"kind": "Mesh"}
    kind = ref["kind"]
    if kind == "Dataplane":
        return 1 + (1 if ref.get("labels") else 0) + (1 if ref.get("sectionName") else 0) + (2 if ref.get("name") else 0)
    return {"Mesh": 0, "MeshSubset": 1, "MeshService": 2, "MeshServiceSubset": 3}[kind]


def _from_specificity(ref: dict) -> tuple[int, int]:
    kind = ref["kind"]
    rank = {"Mesh": 0, "MeshSubset": 1, "MeshService": 2, "MeshServiceSubset": 3}[kind]
    return rank, len(ref.get("tags") or {})


def selects(ref: dict | None, dataplane: dict, inbound: dict) -> bool:
    """Whether a policy's top-level targetRef selects this inbound of this data plane."""
    ref = ref or {"kind": "Mesh"}
    kind, tags = ref["kind"], inbound.get("tags") or {}
    if kind == "Mesh":
        return True
    if kind == "MeshService":
        return tags.get(SERVICE_TAG) == ref["name"]
    if kind in ("MeshSubset", "MeshServiceSubset"):
        if kind == "MeshServiceSubset" and tags.get(SERVICE_TAG) != ref["name"]:
            return False
        return all(tags.get(k) == v for k, v in (ref.get("tags") or {}).items())
    # Dataplane
    if ref.get("name") and ref["name"] != dataplane.get("name"):
        return False
    labels = dataplane.get("labels") or {}
    if any(labels.get(k) != v for k, v in (ref.get("labels") or {}).items()):
        return False
    section = ref.get("sectionName")
    return not section or section in (inbound.get("name"), str(inbound.get("port")))


def _client_pairs(ref: dict) -> frozenset[tuple[str, str]]:
    """The (tag, value) pairs a client must carry to match a `from` targetRef."""
    pairs = dict(ref.get("tags") or {})
    if ref["kind"] in ("MeshService", "MeshServiceSubset"):
        pairs[SERVICE_TAG] = ref["name"]
    return frozenset(pairs.items())


# ---- compiled form ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Rule:
    """One `from` entry as it applies to an inbound: who it matches, what it says, where from."""
    requires: frozenset[tuple[str, str]]
    action: str
    policy: str
    index: int

    def as_dict(self) -> dict[str, Any]:
        return {"requires": sorted(map(list, self.requires)), "action": self.action, "policy": self.policy,
                "index": self.index}


def compile_inbound(policies: list[dict], dataplane: dict, inbound: dict) -> list[Rule]:
    """The rules for one inbound, strongest first (the first one a client matches decides): the
    MeshTrafficPermissions selecting it, or when none does, the legacy TrafficPermission's."""
    modern = _compile_modern([p for p in policies if p.get("type", KIND) != LEGACY], dataplane, inbound)
    return modern or _compile_legacy([p for p in policies if p.get("type") == LEGACY], inbound)


def _compile_modern(policies: list[dict], dataplane: dict, inbound: dict) -> list[Rule]:
    keyed = []
    for policy in policies:
        spec = policy.get("spec") or {}
        top = spec.get("targetRef")
        if not selects(top, dataplane, inbound):
            continue
        for index, entry in enumerate(spec.get("from") or ()):
            ref = entry["targetRef"]
            # a `precedence` (Consul's service-intentions, meshway.zones._intentions) ranks above
            # every MeshTrafficPermission, which is then the default where no intention matches
            rank = (entry.get("precedence", 0), _from_specificity(ref), _top_specificity(top))
            keyed.append((rank, Rule(_client_pairs(ref), entry["default"]["action"], policy["name"], index)))
    # weakest first, the last one a client matches wins: later from[] entries last, then names
    # in descending order (Kuma's CompareByDisplayName: the name that sorts first wins), then rank
    keyed.sort(key=lambda kr: kr[1].index)
    keyed.sort(key=lambda kr: kr[1].policy, reverse=True)
    keyed.sort(key=lambda kr: kr[0])
    return [rule for _, rule in reversed(keyed)]


def _tags_match(match: dict[str, str], tags: dict[str, str]) -> bool:
    """Kuma's TagSelector: every tag of the selector carried, with its value or any value for `*`."""
    return all(k in tags and (v == "*" or tags[k] == v) for k, v in match.items())


def _rank(match: dict[str, str]) -> tuple[int, int]:
    """Kuma's TagSelectorRank: exact values count before wildcards."""
    wild = sum(1 for v in match.values() if v == "*")
    return len(match) - wild, wild


def _compile_legacy(policies: list[dict], inbound: dict) -> list[Rule]:
    """Kuma's legacy TrafficPermission (`SelectInboundConnectionPolicy`): the one policy whose
    `destinations` selector matches the inbound's tags most specifically decides (same rank: the
    one created later; then the name that sorts first); a client matching any of its `sources`
    is allowed, any other denied. So a specific permission shadows a broader one for its inbound."""
    tags = inbound.get("tags") or {}
    best, best_key = None, None
    for policy in sorted(policies, key=lambda p: p["name"]):
        for selector in policy.get("destinations") or ():
            if _tags_match(selector["match"], tags):
                key = (_rank(selector["match"]), policy.get("creationTime") or "")
                if best_key is None or key > best_key:
                    best, best_key = policy, key
    if best is None:
        return []
    return [Rule(frozenset((k, v) for k, v in sel["match"].items() if (k, v) != (SERVICE_TAG, "*")), ALLOW,
                 f"{LEGACY}/{best['name']}", index) for index, sel in enumerate(best.get("sources") or ())]


def client_identity(mesh: str, uris: list[str] | tuple[str, ...]) -> frozenset[tuple[str, str]] | None:
    """A client's (tag, value) pairs from its certificate's URIs; None if not of this mesh."""
    prefix = f"spiffe://{mesh}/"
    pairs = {(SERVICE_TAG, u[len(prefix):]) for u in uris if u.startswith(prefix) and len(u) > len(prefix)}
    if not pairs:
        return None
    for uri in uris:
        if uri.startswith("kuma://"):
            tag, _, value = uri[len("kuma://"):].rpartition("/")
            if tag and value:
                pairs.add((tag, value))
    return frozenset(pairs)


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str  # Allow, Deny or AllowWithShadowDeny
    policy: str | None  # the policy whose entry matched, None when nothing matched
    index: int | None = None

    @property
    def allowed(self) -> bool:
        return self.action != DENY

    def why(self) -> str:
        if self.policy is None:
            return "no MeshTrafficPermission allows it (mTLS is on: denied by default)"
        if self.policy.startswith(f"{LEGACY}/"):
            return f"TrafficPermission {self.policy.partition('/')[2]} sources[{self.index}]: {self.action}"
        if self.policy.startswith("service-intentions/"):  # Consul's, as meshway.zones._intentions names them
            return f"service-intentions {self.policy.partition('/')[2]} Sources[{self.index}]: {self.action.lower()}"
        return f"MeshTrafficPermission {self.policy} from[{self.index}]: {self.action}"


NOTHING_MATCHED = Decision(DENY, None)
NOT_OF_MESH = Decision(DENY, None)


def decide(rules: list[Rule], client: frozenset[tuple[str, str]] | None) -> Decision:
    """The pure decision: the strongest rule whose requirements the client carries."""
    if client is None:
        return NOT_OF_MESH
    keys = None
    for rule in rules:
        if rule.requires <= client:
            return Decision(rule.action, rule.policy, rule.index)
        if any(v == "*" for _, v in rule.requires):  # a legacy selector's wildcard: any value of a carried tag
            keys = keys if keys is not None else {k for k, _ in client}
            if all((k, v) in client or (v == "*" and k in keys) for k, v in rule.requires):
                return Decision(rule.action, rule.policy, rule.index)
    return NOTHING_MATCHED


class InboundPermissions:
    """One inbound's compiled rules with a per-identity memo (the hot path is a dict lookup)."""

    __slots__ = ("mesh", "rules", "_memo")

    def __init__(self, mesh: str, rules: list[Rule]) -> None:
        self.mesh, self.rules, self._memo = mesh, rules, {}

    def decide(self, uris: tuple[str, ...]) -> Decision:
        found = self._memo.get(uris)
        if found is None:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            found = self._memo[uris] = decide(self.rules, client_identity(self.mesh, uris))
        return found

    @classmethod
    def from_section(cls, mesh: str, rules: list[dict]) -> "InboundPermissions":
        return cls(mesh, [Rule(frozenset(tuple(p) for p in r["requires"]), r["action"], r["policy"], r["index"])
                          for r in rules])


def policies_of(section: dict[str, Any], mesh: str) -> list[dict]:
    """The mesh's MeshTrafficPermissions and legacy TrafficPermissions in a snapshot's `mesh_resources` section."""
    return [p for p in section.get("policies") or () if p.get("type") in (KIND, LEGACY) and p.get("mesh") == mesh]


# ---- a data plane's table (compiled by the data plane from its snapshot; checked by workers) ------
def mtls_backend(section: dict[str, Any], mesh: str) -> dict | None:
    """The Mesh's enabled mTLS backend (`mtls.enabledBackend`), None when mTLS is off."""
    spec = next((m for m in section.get("meshes") or () if m.get("name") == mesh), {})
    mtls = spec.get("mtls") or {}
    enabled = mtls.get("enabledBackend")
    return next((b for b in mtls.get("backends") or () if b.get("name") == enabled), None) if enabled else None


def permissions_section(section: dict[str, Any], mesh: str, dataplane: dict | None) -> dict[str, Any]:
    """What a data plane's `mesh` section gets: `mtls_mode` (Kuma's default STRICT) and, per own
    inbound `ip:port`, its rules; nothing when the Mesh's mTLS is off (permissions do not apply)."""
    backend = mtls_backend(section, mesh)
    if backend is None or dataplane is None:
        return {}
    from ._resources import PROTOCOL_TAG, inbounds

    policies = policies_of(section, mesh)
    table = {}
    for inbound in inbounds(dataplane):
        host = f"[{inbound['address']}]" if ":" in inbound["address"] else inbound["address"]
        table[f"{host}:{inbound['port']}"] = {
            "rules": [r.as_dict() for r in compile_inbound(policies, dataplane, inbound)],
            "http": (inbound.get("tags") or {}).get(PROTOCOL_TAG) in ("http", "http2", "grpc"),
        }
    return {"mtls_mode": (backend.get("mode") or "STRICT").lower(), "mtls_mesh": mesh, "permissions": table,
            "trust": (section.get("trust") or {}).get(mesh, [])}


def _uris(der: bytes | None) -> tuple[str, ...]:
    if not der:
        return ()
    from cryptography import x509

    try:
        san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return ()
    return tuple(san.value.get_values_for_type(x509.UniformResourceIdentifier))


class PermissionTable:
    """A worker's permissions: own inbound (ip, port) -> InboundPermissions; peer certificates'
    URIs memoized by certificate, so a connection costs two dict lookups."""

    def __init__(self, mesh: str, inbound: dict[tuple[str, int], tuple[InboundPermissions, bool]]) -> None:
        self.mesh, self.inbound, self._peers = mesh, inbound, {}
        self.shadow_denied = 0

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> "PermissionTable | None":
        table = section.get("permissions")
        if table is None:
            return None
        mesh = section.get("mtls_mesh") or ""
        compiled = {}
        for entry, spec in table.items():
            host, _, port = entry.rpartition(":")
            compiled[(host.strip("[]"), int(port))] = (InboundPermissions.from_section(mesh, spec["rules"]), spec["http"])
        return cls(mesh, compiled)

    def peer_uris(self, der: bytes | None) -> tuple[str, ...]:
        """The URIs of a peer certificate already checked (memoized), else parsed."""
        return self._peers.get(der) or _uris(der)

    def check(self, der: bytes | None, ip: str, port: int) -> tuple[Decision, bool] | None:
        found = self.inbound.get((ip, port))
        if found is None:
            return None  # not one of our inbounds (a hybrid sidecar's destination): no policy here
        uris = self._peers.get(der)
        if uris is None:
            if len(self._peers) >= _MEMO_MAX:
                self._peers.clear()
            uris = self._peers[der] = _uris(der)
        perms, http = found
        decision = perms.decide(uris)
        if decision.action == SHADOW:
            self.shadow_denied += 1
            _log.info("mesh shadow deny (allowed) dst=%s:%d peer=%s: %s", ip, port,
                      next((u for u in uris if u.startswith("spiffe://")), "-"), decision.why())
        return decision, http


def kuma_uris(mesh: str, dataplane: dict) -> tuple[str, ...]:
    """The SANs Kuma puts on a data plane certificate (`pkg/core/ca/issuer`): `spiffe://<mesh>/<service>`
    for each service, `kuma://<tag>/<value>` for each inbound tag; permissions match clients on them."""
    net = dataplane.get("networking") or {}
    services, tags = [], []
    for part in [*(net.get("inbound") or ()), net.get("gateway") or {}]:
        for key, value in sorted((part.get("tags") or {}).items()):
            if key == SERVICE_TAG:
                services.append(f"spiffe://{mesh}/{value}")
            tags.append(f"kuma://{key}/{value}")
    return tuple(dict.fromkeys([*services, *tags]))


# ---- reachable services ---------------------------------------------------------------------------
def reachable_services(section: dict[str, Any], mesh: str, me: dict | None, others: list[dict],
                       elsewhere: Iterable[str] = ()) -> set[str] | None:
    """The services data plane `me` may call (None: all). Kuma's `transparentProxying.
    reachableServices` or `reachableBackends` (MeshService refs by name) when set; otherwise,
    beyond Kuma (where it is the experimental KUMA_EXPERIMENTAL_AUTO_REACHABLE_SERVICES), derived
    from the permissions when mTLS is on: a service is reachable when at least one of its inbounds
    allows this data plane's identity. A service that runs only `elsewhere` (other zones, see
    meshway.zones) is reachable then: its own zone's sidecars decide, which this one cannot."""
    if me is None:
        return None
    tp = (me.get("networking") or {}).get("transparentProxying") or {}
    if tp.get("reachableServices") is not None:
        return set(tp["reachableServices"])
    if tp.get("reachableBackends") is not None:  # set, even `{}`: only what its refs name (none: nothing)
        return _backend_refs(tp["reachableBackends"].get("refs") or (), others)
    if mtls_backend(section, mesh) is None:
        return None
    from ._resources import inbounds

    identity = client_identity(mesh, kuma_uris(mesh, me))
    policies = policies_of(section, mesh)
    out: set[str] = set()
    here: set[str] = {i["service"] for i in inbounds(me)}
    for dp in others:
        for inbound in inbounds(dp):
            here.add(inbound["service"])
            if inbound["service"] not in out and decide(compile_inbound(policies, dp, inbound), identity).allowed:
                out.add(inbound["service"])
    return out | (set(elsewhere) - here)


def _backend_refs(refs, others: list[dict]) -> set[str]:
    """The services `reachableBackends.refs` name: a MeshService ref by `name` (a service is a
    `kuma.io/service` value here), or by `labels`, matched against the tags of the services'
    inbounds and their data planes' labels (we have no MeshService objects to carry labels)."""
    from ._resources import inbounds

    out = set()
    for ref in refs:
        if ref.get("kind", "MeshService") != "MeshService":
            continue  # MeshExternalService / MeshMultiZoneService: none exist in a meshway mesh
        if ref.get("name"):
            out.add(ref["name"])
            continue
        wanted = (ref.get("labels") or {}).items()
        for dp in others:
            for inbound in inbounds(dp):
                carried = {**(dp.get("labels") or {}), **(inbound.get("tags") or {})}
                if wanted and all(carried.get(k) == v for k, v in wanted):
                    out.add(inbound["service"])
    return out


def dns_vips(section: dict[str, Any], mesh: str, name: str,
             elsewhere: Iterable[str] = ()) -> tuple[dict[str, str], dict[str, str]]:
    """(the VIPs data plane `mesh/name` may resolve, those of services it may not reach): its DNS
    proxy answers only the first, as Kuma configures DNS for the reachable outbounds only.
    `elsewhere`: the services other zones report (see `reachable_services`)."""
    vips = (section.get("vips") or {}).get(mesh, {})
    dataplanes = [d for d in section.get("dataplanes") or () if d.get("mesh", mesh) == mesh]
    me = next((d for d in dataplanes if d.get("name") == name), None)
    allowed = reachable_services(section, mesh, me, [d for d in dataplanes if d is not me], elsewhere)
    if allowed is None:
        return dict(vips), {}
    return ({s: ip for s, ip in vips.items() if s in allowed}, {s: ip for s, ip in vips.items() if s not in allowed})


def split_reachable(section: dict[str, Any], mesh: str, me: dict | None, others: list[dict],
                    by_service: dict[str, list[tuple[str, int]]]) -> tuple[dict, dict[str, Any]]:
    """(the reachable part of `by_service`, the `mesh` section's `unreachable`: `ip:port` of each
    endpoint and VIP of the others -> service, so a call there is refused with a clear reason)."""
    allowed = reachable_services(section, mesh, me, others)
    if allowed is None:
        return by_service, {}
    from ._resources import PROTOCOL_TAG, inbounds

    http = {i["service"] for dp in others for i in inbounds(dp) if (i.get("tags") or {}).get(PROTOCOL_TAG) == "http"}
    vips = (section.get("vips") or {}).get(mesh, {})
    unreachable = {}
    for service, endpoints in by_service.items():
        if service in allowed:
            continue
        for ip, port in endpoints:
            unreachable[f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"] = [service, service in http]
        if service in vips:
            unreachable[f"{vips[service]}:80"] = [service, service in http]
    for outbound in (me.get("networking") or {}).get("outbound") or ():  # `me` is set: allowed is not None
        service = (outbound.get("tags") or {}).get(SERVICE_TAG) or (outbound.get("backendRef") or {}).get("name")
        if service and service not in allowed:
            address = outbound.get("address") or "127.0.0.1"
            key = f"[{address}]:{outbound['port']}" if ":" in address else f"{address}:{outbound['port']}"
            unreachable[key] = [service, service in http]
    return {s: e for s, e in by_service.items() if s in allowed}, ({"unreachable": unreachable} if unreachable else {})
