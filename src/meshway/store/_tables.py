"""SQL tables generated from the entity declarations.

Each entity gets one table: `id`, timestamps, one column per unique field or endpoint key
(so the database enforces uniqueness and lookups by name are indexed), `<field>_id` per
foreign reference with the declared ON DELETE (cascade or restrict), `cache_key` for composite
uniqueness, and `body`: the whole entity as JSON. Adding a plain field needs no schema change.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, MetaData, String, Table, Text

from meshway.model import ENTITIES, Entity
from meshway.store._admin_tokens import admin_tokens_table
from meshway.store._config_entries import define_table as define_config_entries_table
from meshway.store._mesh import define_table as define_mesh_table

META_TABLE = "meshway_meta"
MIGRATIONS_TABLE = "schema_migrations"


def key_columns(entity: Entity) -> tuple[str, ...]:
    """Fields stored in their own column: unique fields and the endpoint key."""
    names = list(entity.unique_fields)
    if entity.endpoint_key and entity.endpoint_key not in names:
        names.append(entity.endpoint_key)
    return tuple(names)


def build_metadata() -> MetaData:
    metadata = MetaData()
    Table(META_TABLE, metadata, Column("key", String(64), primary_key=True), Column("value", BigInteger, nullable=False))
    Table(MIGRATIONS_TABLE, metadata, Column("name", String(128), primary_key=True),
          Column("executed_at", BigInteger, nullable=False))
    for entity in ENTITIES.values():
        Table(entity.name, metadata, *_entity_columns(entity))
    define_mesh_table(metadata)
    define_config_entries_table(metadata)
    admin_tokens_table(metadata)  # not an entity: never exported, never in a snapshot
    oauth2_codes_table(metadata)  # neither
    return metadata


def _entity_columns(entity: Entity) -> list[Column]:
    cols = [Column("id", String(36), primary_key=True),
            Column("created_at", BigInteger), Column("updated_at", BigInteger)]
    for name in key_columns(entity):
        cols.append(Column(name, Text, unique=entity.fields[name].unique, index=not entity.fields[name].unique))
    for name, field in entity.foreign_fields.items():
        fk = ForeignKey(f"{field.reference}.id", ondelete=field.on_delete.upper())
        cols.append(Column(f"{name}_id", String(36), fk, index=True))
    if entity.cache_key:
        cols.append(Column("cache_key", Text, unique=True))
    cols.append(Column("body", Text, nullable=False))
    if entity.ttl:
        cols.append(Column("ttl", BigInteger, index=True))
    return cols


OAUTH2_CODES_TABLE = "oauth2_authorization_codes"


def oauth2_codes_table(metadata: MetaData) -> Table:
    """Kong's oauth2_authorization_codes: written and used once by the proxy's oauth2 plugin; no
    Admin API, never exported (Kong: generate_admin_api = false, db_export = false). The code's
    other fields are in `body`; `ttl` is when it expires (unix seconds)."""
    return Table(OAUTH2_CODES_TABLE, metadata,
                 Column("id", String(36), primary_key=True),
                 Column("code", Text, unique=True, nullable=False),
                 Column("credential_id", String(36), ForeignKey("oauth2_credentials.id", ondelete="CASCADE"), index=True),
                 Column("service_id", String(36), ForeignKey("services.id", ondelete="CASCADE"), index=True),
                 Column("plugin_id", String(36), ForeignKey("plugins.id", ondelete="CASCADE"), index=True),
                 Column("created_at", BigInteger), Column("ttl", BigInteger, index=True),
                 Column("body", Text, nullable=False))


def cache_key(entity: Entity, row: dict[str, Any]) -> str:
    parts = [_key_text(row.get(f)) for f in entity.cache_key]
    return entity.name + ":" + ":".join(parts)


def _key_text(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("id", "")
    return "" if value is None else str(value)


def row_values(entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    """An entity to its table's column values."""
    values: dict[str, Any] = {"id": row["id"], "created_at": row.get("created_at"), "updated_at": row.get("updated_at")}
    for name in key_columns(entity):
        values[name] = row.get(name)
    for name in entity.foreign_fields:
        values[f"{name}_id"] = (row.get(name) or {}).get("id")
    if entity.cache_key:
        values["cache_key"] = cache_key(entity, row)
    values["body"] = json.dumps(row, sort_keys=True)
    return values
