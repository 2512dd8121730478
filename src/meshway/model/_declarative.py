"""Declarative config (Kong's `_format_version` files) to the normalized flat snapshot, and back.

Theory of operation:
1. Load YAML/JSON; check the meta keys.
2. Flatten: every collection of ENTITIES may appear at the top level, and nested under any entity
   it references (`services[].routes[]`, `consumers[].acls[]`, `routes[].plugins[]`...); a nested
   item gets its parent reference set. Each item keeps its path for error messages.
3. Ids: a missing id is uuid5 of the entity's natural key (`services:my-svc`), or of its path
   when the natural key is empty, so re-applying the same file gives the same ids and hash.
4. References by name (`service: my-svc`), bare id, or `{id: ...}` are resolved to `{"id": ...}`
   and must point to an entity of the same file.
5. Each item is validated by its Entity; uniqueness is checked across the file.
Kong's declarative schema gives every entity record two keys of its own, `_comment` (a string)
and `_ignore` (an array): they are checked and dropped, never stored; any other `_` key on an
entity is an unknown field, as in Kong (kong/db/schema/others/declarative_config.lua).
Every error is collected, keyed by path (`services[2].routes[0].paths[1]`), never just the first.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import yaml

from meshway.model import _vaults
from meshway.model._entity import Entity, stable_id
from meshway.model._errors import DeclarativeError, SchemaViolation, flatten_fields
from meshway.model.entities import ENTITIES

FORMAT_VERSIONS = ("1.1", "2.1", "3.0")
META_KEYS = ("_format_version", "_transform", "_comment", "_ignore", "_workspace", "_info")
# Keys Kong's declarative schema adds to every entity record, with the check of their value.
ENTITY_EXTRAS = {"_comment": (str, "expected a string"), "_ignore": (list, "expected an array")}
TIMESTAMPS = ("created_at", "updated_at")
MESH_KEY = "mesh_resources"  # the mesh's own resources (Mesh, Dataplane, policies), see meshway.mesh._export


# decK's spelling of consumer group memberships: `consumer_groups[].consumers: [{username}]` and
# `consumers[].groups: [{name}]`, both references by name or id; each becomes a consumer_group_consumers item.
MEMBERSHIP_ALIASES = {"consumer_groups": ("consumers", "consumer"), "consumers": ("groups", "consumer_group")}
MEMBERS = "consumer_group_consumers"


class _Item:
    __slots__ = ("entity", "path", "raw", "id")

    def __init__(self, entity: Entity, path: str, raw: dict) -> None:
        self.entity, self.path, self.raw, self.id = entity, path, raw, None


# libyaml's loader parses a 10,000-route file ~10x faster than the pure-Python one.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_document(source: str | bytes | dict) -> dict:
    """YAML or JSON text (or an already parsed dict) to a dict, or DeclarativeError."""
    if isinstance(source, (str, bytes)):
        try:
            source = yaml.load(source, Loader=_LOADER)
        except yaml.YAMLError as e:
            raise DeclarativeError({"@document": f"failed parsing declarative configuration: {e}"}) from None
    if not isinstance(source, dict):
        raise DeclarativeError({"@document": "expected an object"})
    return source


def parse_declarative(source: str | bytes | dict) -> dict[str, Any]:
    """A declarative document to the normalized snapshot of docs/snapshot.md; DeclarativeError on any error."""
    doc = load_document(source)
    errors: dict[str, str] = {}
    _check_meta(doc, errors)
    items = _flatten(doc, errors)
    _assign_ids(items, local_only=True)
    _resolve_references(items, errors)
    _assign_ids(items, local_only=False)
    snapshot = _validate_items(items, doc.get("_transform", True) is not False, errors)
    _check_unique(snapshot, items, errors)
    _check_references(snapshot, items, errors)
    if MESH_KEY in doc:  # Kuma resources (meshway.mesh._export): checked as `meshway apply` does
        from meshway.mesh._export import parse_list

        section = parse_list(doc[MESH_KEY], errors)
        if section is not None:
            snapshot[MESH_KEY] = section
    if errors:
        raise DeclarativeError(errors)
    return snapshot


def empty_snapshot() -> dict[str, Any]:
    return {"_format_version": "3.0", **{name: [] for name in ENTITIES}}


def _check_meta(doc: dict, errors: dict) -> None:
    version = doc.get("_format_version")
    if version is None:
        errors["_format_version"] = "required field missing"
    elif str(version) not in FORMAT_VERSIONS:
        errors["_format_version"] = "expected one of: " + ", ".join(FORMAT_VERSIONS)
    if not isinstance(doc.get("_transform", True), bool):
        errors["_transform"] = "expected a boolean"
    for key in doc:
        if key not in ENTITIES and key not in META_KEYS and key != MESH_KEY:
            errors[str(key)] = "unknown field"


def _children(parent: Entity) -> list[tuple[Entity, str]]:
    """(child entity, foreign field) pairs that may nest under `parent`."""
    return [(child, fname) for child in ENTITIES.values() for fname, f in child.foreign_fields.items()
            if f.reference == parent.name and child.name not in parent.fields]


def _flatten(doc: dict, errors: dict) -> list[_Item]:
    items: list[_Item] = []
    for name, entity in ENTITIES.items():
        _flatten_list(entity, doc.get(name), name, None, items, errors)
    return items


def _flatten_list(entity: Entity, value: Any, path: str, parent: tuple | None, items: list, errors: dict) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        errors[path] = "expected an array"
        return
    for i, raw in enumerate(value):
        _flatten_item(entity, raw, f"{path}[{i}]", parent, items, errors)


def _flatten_item(entity: Entity, raw: Any, path: str, parent: tuple | None, items: list, errors: dict) -> None:
    if not isinstance(raw, dict):
        errors[path] = "expected a record"
        return
    raw = _drop_extras(raw, path, errors)
    alias = _membership_alias(entity.name, raw, path, errors) if entity.name in MEMBERSHIP_ALIASES else None
    item = _Item(entity, path, raw)
    if parent is not None:
        field, parent_item = parent
        raw[field] = parent_item
    items.append(item)
    nested = [(child, fname, raw.pop(child.name)) for child, fname in _children(entity) if child.name in raw]
    if nested or alias:
        _assign_id(item, local_only=False)  # children need it now; parents' keys never hold references
    for child, fname, value in nested:
        value = _companion_items(entity, child, value)
        _flatten_list(child, value, f"{path}.{child.name}", (fname, item), items, errors)
    if alias:
        key, own, members = alias
        _flatten_list(ENTITIES[MEMBERS], members, f"{path}.{key}", (own, item), items, errors)


def _membership_alias(name: str, raw: dict, path: str, errors: dict) -> tuple[str, str, list] | None:
    """decK's `consumers` / `groups` list taken out of `raw`: (its key, the parent's field, membership items).
    The parent's tags are copied onto each, so that a select-tag replace manages it with its parent."""
    key, field = MEMBERSHIP_ALIASES[name]
    refs = raw.pop(key, None)
    if refs is None:
        return None
    if not isinstance(refs, list):
        errors[f"{path}.{key}"] = "expected an array"
        return None
    own = "consumer" if field == "consumer_group" else "consumer_group"
    return key, own, [{field: ref, "tags": raw.get("tags")} for ref in refs]


def _drop_extras(raw: dict, path: str, errors: dict) -> dict:
    """The item without Kong's per-entity `_comment` / `_ignore` keys (their type checked)."""
    out = {}
    for key, value in raw.items():
        extra = ENTITY_EXTRAS.get(key)
        if extra is None:
            out[key] = value
        elif value is not None and not isinstance(value, extra[0]):
            errors[f"{path}.{key}"] = extra[1]
    return out


def _companion_items(parent: Entity, child: Entity, value: Any) -> Any:
    """`certificates[].snis: [a.test]` is shorthand for `[{name: a.test}]`, as in the Admin API."""
    comp = parent.companions.get(child.name)
    if comp is None or not isinstance(value, list):
        return value
    return [{comp.key: v} if isinstance(v, str) else v for v in value]


def _assign_ids(items: list[_Item], *, local_only: bool) -> None:
    for item in items:
        if item.id is None:
            _assign_id(item, local_only=local_only)


def _assign_id(item: _Item, *, local_only: bool) -> None:
    given = item.raw.get("id")
    if given is not None:
        item.id = str(given)
        return
    key_fields = item.entity.natural_key
    if local_only and any(f in item.entity.foreign_fields for f in key_fields):
        return
    values = [_key_part(item.raw.get(f)) for f in key_fields]
    if any(v is not None for v in values):
        item.id = stable_id(item.entity.name, "|".join("" if v is None else v for v in values))
    else:
        item.id = stable_id(item.entity.name, "@" + item.path)


def _key_part(value: Any) -> str | None:
    if isinstance(value, _Item):
        return value.id
    if isinstance(value, dict):
        return value.get("id")
    return None if value is None else str(value)


def _resolve_references(items: list[_Item], errors: dict) -> None:
    ids = {name: {} for name in ENTITIES}
    by_key = {name: {} for name in ENTITIES}
    for item in items:
        ids[item.entity.name][item.id] = item
        key = item.entity.endpoint_key
        if key and isinstance(item.raw.get(key), str):
            by_key[item.entity.name][item.raw[key]] = item
    for item in items:
        for fname, field in item.entity.foreign_fields.items():
            ref = item.raw.get(fname)
            if ref is not None:
                item.raw[fname] = _resolve(item, fname, ref, ids[field.reference], by_key[field.reference], errors)


def _resolve(item: _Item, fname: str, ref: Any, ids: dict, by_key: dict, errors: dict) -> Any:
    if isinstance(ref, _Item):
        return {"id": ref.id}
    target = ref.get("id") or ref.get("name") or ref.get("username") if isinstance(ref, dict) else ref
    if not isinstance(target, str):
        return ref  # wrong type: the entity's own validation names it
    found = by_key.get(target) or ids.get(_normal_uuid(target))
    if found is None:
        reference = item.entity.foreign_fields[fname].reference
        errors[f"{item.path}.{fname}"] = f"invalid reference '{fname}: {target}' (no such entry in '{reference}')"
        return None
    return {"id": found.id}


def _normal_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


def _validate_items(items: list[_Item], transform: bool, errors: dict) -> dict[str, Any]:
    snapshot = empty_snapshot()
    for item in items:
        item.raw["id"] = item.id
        try:
            entity = item.entity.validate(item.raw, seed=item.id, transform=transform)
        except SchemaViolation as e:
            for key, message in flatten_fields(e.fields, item.path).items():
                errors.setdefault(key, message)  # an unresolved reference says more than "required field missing"
            continue
        item.id = entity["id"]
        snapshot[item.entity.name].append(entity)
    for name in ENTITIES:
        snapshot[name].sort(key=lambda e: e["id"])
    return snapshot


def _check_unique(snapshot: dict, items: list[_Item], errors: dict) -> None:
    paths = {(i.entity.name, i.id): i.path for i in items}
    for name, entity in ENTITIES.items():
        keys = [("primary key", ("id",))] + [(f, (f,)) for f in entity.unique_fields]
        if entity.cache_key:
            keys.append((", ".join(entity.cache_key), entity.cache_key))
        for label, fields in keys:
            _check_unique_key(name, label, fields, snapshot[name], paths, errors)


def _check_unique_key(name: str, label: str, fields: tuple, entities: list, paths: dict, errors: dict) -> None:
    seen: set[str] = set()
    for e in entities:
        values = [e[f] for f in fields]
        if all(v is None for v in values):
            continue
        key = json.dumps(values, sort_keys=True)
        if key in seen:
            shown = ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in values)
            path = paths.get((name, e["id"]), name)
            errors[path] = f"uniqueness violation: '{name}' entity with {label} set to '{shown}' already declared"
        seen.add(key)


def _check_references(snapshot: dict, items: list[_Item], errors: dict) -> None:
    """Every `{vault://...}` of the file resolves now, with the file's own vaults."""
    paths = {(i.entity.name, i.id): i.path for i in items}
    for name in (*_vaults.REFERENCEABLE, "plugins"):
        for row in snapshot[name]:
            if _vaults.has_references(name, row):
                found = _vaults.reference_errors(name, row, snapshot["vaults"])
                errors.update(flatten_fields(found, paths.get((name, row["id"]), name)))


def snapshot_hash(snapshot: dict[str, Any]) -> str:
    """md5 of the canonical JSON (sorted keys, entities by id), timestamps left out."""
    canonical = {k: _strip_timestamps(v) for k, v in snapshot.items()}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.md5(text.encode()).hexdigest()


def _strip_timestamps(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    entities = [{k: v for k, v in e.items() if k not in TIMESTAMPS} for e in value]
    return sorted(entities, key=lambda e: str(e.get("id")))


def to_declarative(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Kong's export shape: flat collections, references as bare ids, `_transform: false`."""
    out: dict[str, Any] = {"_format_version": "3.0", "_transform": False}
    for name, entity in ENTITIES.items():
        rows = [_export_entity(entity, e) for e in snapshot.get(name, [])]
        if rows:
            out[name] = rows
    if snapshot.get(MESH_KEY):
        from meshway.mesh._export import export_list

        resources = export_list(snapshot[MESH_KEY])
        if resources:
            out[MESH_KEY] = resources
    return out


def _export_entity(entity: Entity, row: dict) -> dict:
    out = {}
    for name, field in entity.fields.items():
        value = row.get(name)
        if name in TIMESTAMPS or (value is None and field.default is None):
            continue
        out[name] = value["id"] if name in entity.foreign_fields and value else value
    return out
