"""Mesh resources in the declarative document: `db_export`, `GET /config`, `db_import`, `POST /config`.

Rules:
- The document's `mesh_resources` key is a list of Kuma resources (`type: Mesh | Dataplane |
  MeshTrafficPermission`, as `kumactl export` writes them), meshes first so that an import
  creates a mesh before what lives in it.
- An export leaves the key out when the only resource is the `default` mesh as the control
  plane creates it: a Kong-only configuration exports as Kong's file, unchanged.
- An import checks every resource as `meshway apply` does (errors keyed `mesh_resources[i].field`).
  A document without the key leaves the stored mesh as it is (a Kong file knows no mesh); with
  it, the mesh resources are replaced whole, in the same transaction as the entities.
- Not exported: insights (status), VIPs (kept by the store, stable across a round trip), token
  revocations and the CAs' secrets (a mesh imported elsewhere gets its own builtin CA).
"""
from __future__ import annotations

from typing import Any

from ._resources import ResourceError, default_mesh, parse_resource

KEY = "mesh_resources"
_TIMES = ("creationTime", "modificationTime")


def export_list(section: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The `mesh_resources` list of an export ([] when there is nothing beyond the default mesh)."""
    section = section or {}
    rows = [*(section.get("meshes") or ()), *(section.get("dataplanes") or ()), *(section.get("policies") or ())]
    rows = [{k: v for k, v in r.items() if k not in _TIMES} for r in rows]
    return [] if rows in ([], [default_mesh()]) else rows


def parse_list(value: Any, errors: dict[str, str]) -> dict[str, list[dict[str, Any]]] | None:
    """The document's `mesh_resources` to the snapshot's section; problems go to `errors`."""
    if value is None:
        return None
    if not isinstance(value, list):
        errors[KEY] = "expected an array"
        return None
    out: dict[str, list[dict[str, Any]]] = {"meshes": [], "dataplanes": [], "policies": []}
    seen: set[tuple] = set()
    for i, raw in enumerate(value):
        try:
            resource = parse_resource(raw)
        except ResourceError as e:
            for field, why in e.causes:
                errors[f"{KEY}[{i}]" + (f".{field}" if field else "")] = why
            continue
        key = (resource["type"], resource.get("mesh"), resource["name"])
        if key in seen:
            errors[f"{KEY}[{i}]"] = f"{resource['type']} {resource['name']} appears twice"
            continue
        seen.add(key)
        {"Mesh": out["meshes"], "Dataplane": out["dataplanes"]}.get(resource["type"], out["policies"]).append(resource)
    meshes = {m["name"] for m in out["meshes"]}
    for i, raw in enumerate(value):
        if isinstance(raw, dict) and raw.get("type") != "Mesh" and raw.get("mesh", "default") not in meshes:
            errors.setdefault(f"{KEY}[{i}].mesh", f"mesh of name {raw.get('mesh', 'default')} is not in the document")
    return out
