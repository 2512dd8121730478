"""The `Entity` declaration and the one validation routine every entry point shares.

Theory of operation: an entity is data (fields, endpoint key, unique and cache keys, checks,
shorthands). `validate()` takes raw input (JSON, decoded form, a declarative item), applies
shorthands, refuses unknown fields, fills defaults (or merges onto the existing entity for
PATCH), validates each field, then runs entity checks. Checks may normalize the entity in place
(fill a protocol-dependent default, hash a password, validate a plugin config) and return
errors keyed by field, or by `@entity` for rules that involve several fields.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import time
import uuid
from typing import Any, Callable

from meshway.model import _vaults
from meshway.model._errors import SchemaViolation
from meshway.model._types import Field, FieldError, Foreign, Json, Record, Uuid, validate_value

ID_NAMESPACE = uuid.UUID("6f1c1e4e-8a59-4d7c-9a0e-6d65736877b1")


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """What an entity check may need beyond the entity: what the user sent, and the mode."""

    provided: frozenset[str]
    creating: bool
    transform: bool = True  # False for Kong's `_transform: false` files (passwords already hashed)
    seed: str | None = None  # declarative files: derive generated values from it, so re-applying is stable


@dataclasses.dataclass(frozen=True)
class Companion:
    """Children written through a list of keys on the parent (Kong's `snis` on certificates)."""

    collection: str
    parent_field: str
    key: str


Check = Callable[[dict[str, Any], CheckContext], "dict[str, Any] | None"]
Shorthand = Callable[[Any], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Entity:
    """An entity declared as data; store tables, Admin API routes and docs are generated from it."""

    name: str
    fields: dict[str, Field]
    admin_path: str
    nested_path: str | None = None
    endpoint_key: str | None = None
    cache_key: tuple[str, ...] = ()
    natural_key: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    shorthands: dict[str, Shorthand] = dataclasses.field(default_factory=dict)
    companions: dict[str, Companion] = dataclasses.field(default_factory=dict)
    description: str = ""
    admin_api: bool = True  # False: no generated Admin API routes (a join entity with its own endpoints)
    # Kong's `ttl = true`: rows may carry an expiry (a `ttl` column, unix seconds) after which
    # they are deleted; rows written through the Admin API have none.
    ttl: bool = False

    @functools.cached_property  # asked per entity validated: a 10,000-route file asks 60,000 times
    def foreign_fields(self) -> dict[str, Foreign]:
        return {n: f for n, f in self.fields.items() if isinstance(f, Foreign)}

    @functools.cached_property
    def unique_fields(self) -> tuple[str, ...]:
        return tuple(n for n, f in self.fields.items() if f.unique)

    def validate(self, data: Any, *, existing: dict | None = None, seed: str | None = None,
                 transform: bool = True) -> dict[str, Any]:
        """Raw input to a complete entity, or SchemaViolation naming every bad field."""
        if not isinstance(data, dict):
            raise SchemaViolation({"@entity": ["expected a record"]})
        errors: dict[str, Any] = {}
        data = self._expand_shorthands(data, errors)
        errors.update({k: "unknown field" for k in data if k not in self.fields})
        ctx = CheckContext(frozenset(data), existing is None, transform, seed)
        merged = merge_entity(self, existing, data) if existing else data
        out = self._validate_fields(merged, existing, seed, errors)
        if not errors:
            for check in self.checks:
                errors.update(check(out, ctx) or {})
        if errors:
            raise SchemaViolation(errors)
        return out

    def _expand_shorthands(self, data: dict, errors: dict) -> dict:
        # As Kong's schema does, a shorthand's fields win over the same fields given beside
        # it: `url: http://a:1/p` with `protocol: ws` is an http service (Supabase's kong.yml).
        data = dict(data)
        for name, expand in self.shorthands.items():
            if name in data:
                value = data.pop(name)
                if value is None:
                    continue
                try:
                    data.update(expand(value))
                except FieldError as e:
                    errors[name] = e.error
        return data

    def _validate_fields(self, merged: dict, existing: dict | None, seed: str | None, errors: dict) -> dict:
        out: dict[str, Any] = {}
        referenceable = _vaults.REFERENCEABLE.get(self.name, ())
        for name, field in self.fields.items():
            if name in referenceable and _vaults.is_reference(merged.get(name)):
                out[name] = merged[name]  # a secret's reference: checked once resolved (_vaults)
                continue
            try:
                if field.auto:
                    out[name] = _auto_value(field, name, merged, existing, seed)
                else:
                    raw = merged[name] if name in merged else field.default_value()
                    out[name] = validate_value(field, raw)
            except FieldError as e:
                errors[name] = e.error
        return out


def merge_entity(entity: Entity, existing: dict, patch: dict) -> dict:
    """PATCH semantics: top-level replace, records (and plugin configs) merged field by field, as Kong does."""
    out = copy.deepcopy(existing)
    for key, value in patch.items():
        field = entity.fields.get(key)
        if isinstance(field, (Record, Json)) and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_record(out[key], value)
        else:
            out[key] = value
    return out


def _merge_record(base: dict, patch: dict) -> dict:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_record(out[key], value)
        else:
            out[key] = value
    return out


def _auto_value(field: Field, name: str, merged: dict, existing: dict | None, seed: str | None) -> Any:
    given = merged.get(name)
    if field.auto == "timestamp":
        if name == "updated_at" and existing is not None:
            return int(time.time())
        return validate_value(field, given) if given is not None else int(time.time())
    if given is not None:
        return Uuid().validate(given) if field.auto == "uuid" else validate_value(field, given)
    value = uuid.uuid5(ID_NAMESPACE, f"{seed}:{name}") if seed else uuid.uuid4()
    return str(value) if field.auto == "uuid" else value.hex


def stable_id(collection: str, key: str) -> str:
    """The id a declarative entity gets when its file gives none: same key, same id."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{collection}:{key}"))
