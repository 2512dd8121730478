"""Consul's `service-intentions`, enforced by the mesh's permission engine (`meshway.mesh._permissions`).

Rules (Consul's intentions, `agent/structs/intention.go` and `agent/xds/rbac.go`):
- An entry's `Name` is the destination service (`*`: every service); each of its `Sources` names
  a calling service (`*`: any) with `Action` allow or deny.
- Precedence by specificity, destination first: exact destination and exact source 9, exact
  destination and any source 8, any destination and exact source 6, both `*` 5 (the `Precedence`
  the stored entry carries). The matching intention of highest precedence decides.
- No intention matches: the default. Consul takes it from its ACL default policy; here it is the
  mesh's own permissions (MeshTrafficPermission, and a mesh with mTLS off allows everything, as
  Kuma's), so intentions are layered on what the mesh already says.
- A source with L7 `Permissions` is not evaluated per request: the decision is taken per
  connection, and Consul treats an L7 intention on a connection-level (L4) filter as deny.

How: each entry becomes, for every mesh, a pseudo MeshTrafficPermission named
`service-intentions/<Name>` whose `from[]` are the entry's Sources in order, each carrying its
Consul precedence. The engine ranks any `from` entry with a precedence above every
MeshTrafficPermission (`compile_inbound`), so one engine compiles, enforces (the destination's
sidecar refuses and logs `decision.why()`), and explains them.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

KIND = "service-intentions"
PREFIX = f"{KIND}/"
WILDCARD = "*"
_PRECEDENCE = {(True, True): 9, (True, False): 8, (False, True): 6, (False, False): 5}


def _ref(name: str) -> dict[str, Any]:
    return {"kind": "Mesh"} if name == WILDCARD else {"kind": "MeshService", "name": name}


def _action(source: Mapping[str, Any]) -> str:
    if source.get("Permissions"):
        return "Deny"  # L7 permissions on a per-connection decision: deny, as Consul's L4 filter does
    return "Allow" if str(source.get("Action", "")).lower() == "allow" else "Deny"


def precedence(destination: str, source: str) -> int:
    return _PRECEDENCE[(destination != WILDCARD, source != WILDCARD)]


def as_policy(entry: Mapping[str, Any], mesh: str) -> dict[str, Any]:
    """One `service-intentions` entry as the engine's policy shape, in `mesh`."""
    destination = entry["Name"]
    return {"type": "MeshTrafficPermission", "mesh": mesh, "name": PREFIX + destination,
            "spec": {"targetRef": _ref(destination),
                     "from": [{"targetRef": _ref(s["Name"]), "default": {"action": _action(s)},
                               "precedence": precedence(destination, s["Name"])}
                              for s in entry.get("Sources") or ()]}}


def intention_policies(entries: Iterable[Mapping[str, Any]], meshes: Iterable[str]) -> list[dict[str, Any]]:
    """The zone's intentions, in every mesh (config entries are the zone's, not a mesh's)."""
    intentions = [e for e in entries if e.get("Kind") == KIND and e.get("Name")]
    return [as_policy(e, mesh) for mesh in meshes for e in intentions]


def with_intentions(section: dict[str, Any], entries: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    """A snapshot's `mesh_resources` section with the intentions added to its policies (the same
    section when there are none)."""
    meshes = [m.get("name") for m in section.get("meshes") or () if m.get("name")]
    extra = intention_policies(entries or (), meshes)
    if not extra:
        return section
    return {**section, "policies": [*(section.get("policies") or ()), *extra]}


def matching(entries: Iterable[Mapping[str, Any]], source: str, destination: str) -> tuple[str, int, str] | None:
    """(the entry's destination Name, the Source's index, its action) of the intention that decides
    a call from `source` to `destination`, None when none matches (the mesh's permissions decide)."""
    found = []
    for entry in entries:
        if entry.get("Kind") != KIND or entry.get("Name") not in (destination, WILDCARD):
            continue
        for i, src in enumerate(entry.get("Sources") or ()):
            if src.get("Name") in (source, WILDCARD):
                found.append((precedence(entry["Name"], src["Name"]), entry["Name"], i, _action(src)))
    if not found:
        return None
    _, name, index, action = max(found, key=lambda f: f[0])
    return name, index, action
