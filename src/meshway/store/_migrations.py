"""Schema migrations: an ordered list of named steps, recorded in `schema_migrations` when run.

`000_base` creates every table generated from the entity declarations plus the `version` row.
A later change that needs a new column (a new unique field or reference) appends a step here;
plain fields live in the JSON body and need none.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from sqlalchemy import Connection, MetaData, insert, inspect, select

from meshway.store._admin_tokens import ADMIN_TOKENS_TABLE
from meshway.store._config_entries import migrate as config_entries_migration
from meshway.store._errors import StoreError
from meshway.store._mesh import migrate as mesh_migration
from meshway.store._tables import META_TABLE, MIGRATIONS_TABLE


def _base(conn: Connection, metadata: MetaData) -> None:
    metadata.create_all(conn)
    if conn.execute(select(metadata.tables[META_TABLE].c.key)).first() is None:
        conn.execute(insert(metadata.tables[META_TABLE]).values(key="version", value=1))


def _admin_tokens(conn: Connection, metadata: MetaData) -> None:
    metadata.tables[ADMIN_TOKENS_TABLE].create(conn, checkfirst=True)  # `000_base` made it on newer databases


def _vaults(conn: Connection, metadata: MetaData) -> None:
    metadata.tables["vaults"].create(conn, checkfirst=True)  # `000_base` made it on newer databases


def _rate_limiting_redis(conn: Connection, metadata: MetaData) -> None:
    """Stored rate-limiting configs: the flat `redis_*` fields into the `redis` record, as Kong
    3.6's migration does (006_350_to_360), so that a PATCH of either never meets a stale copy."""
    import json

    from sqlalchemy import update

    from meshway.plugins import PluginConfigError, validate_plugin_config

    table = metadata.tables["plugins"]
    for row_id, body in conn.execute(select(table.c.id, table.c.body)).all():
        plugin = json.loads(body)
        if plugin.get("name") != "rate-limiting" or not isinstance(plugin.get("config"), dict):
            continue
        try:
            plugin["config"] = validate_plugin_config("rate-limiting", plugin["config"])
        except PluginConfigError:
            continue  # left as it was: the Admin API reports it when it is next written
        conn.execute(update(table).where(table.c.id == row_id).values(body=json.dumps(plugin)))


def _new_tables(conn: Connection, metadata: MetaData) -> None:
    """Tables of entities declared since the database was made (plugin credentials...)."""
    metadata.create_all(conn, checkfirst=True)


def _consumer_groups(conn: Connection, metadata: MetaData) -> None:
    """consumer_groups, their memberships, and plugins' `consumer_group` reference (column and cache key)."""
    import json

    from sqlalchemy import update

    from meshway.model import ENTITIES
    from meshway.store._tables import cache_key

    metadata.create_all(conn, checkfirst=True)
    if "consumer_group_id" not in {c["name"] for c in inspect(conn).get_columns("plugins")}:
        conn.exec_driver_sql("ALTER TABLE plugins ADD COLUMN consumer_group_id VARCHAR(36) "
                             "REFERENCES consumer_groups (id) ON DELETE CASCADE")
        conn.exec_driver_sql("CREATE INDEX ix_plugins_consumer_group_id ON plugins (consumer_group_id)")
    table = metadata.tables["plugins"]
    for row_id, body in conn.execute(select(table.c.id, table.c.body)).all():
        plugin = json.loads(body)
        plugin.setdefault("consumer_group", None)
        conn.execute(update(table).where(table.c.id == row_id).values(
            body=json.dumps(plugin, sort_keys=True), cache_key=cache_key(ENTITIES["plugins"], plugin)))


def _oauth2_issued(conn: Connection, metadata: MetaData) -> None:
    """The proxy writes the oauth2 tokens and codes it issues to the database (as Kong): a `ttl`
    column on oauth2_tokens, the oauth2_authorization_codes table."""
    from sqlalchemy import text

    if "ttl" not in {c["name"] for c in inspect(conn).get_columns("oauth2_tokens")}:
        conn.execute(text("ALTER TABLE oauth2_tokens ADD COLUMN ttl BIGINT"))
        conn.execute(text("CREATE INDEX ix_oauth2_tokens_ttl ON oauth2_tokens (ttl)"))
    metadata.create_all(conn, checkfirst=True)


MIGRATIONS: list[tuple[str, Callable[[Connection, MetaData], None]]] = [
    ("000_base", _base),
    ("001_mesh_resources", mesh_migration),
    ("002_admin_tokens", _admin_tokens),
    ("003_vaults", _vaults),
    ("004_rate_limiting_redis_record", _rate_limiting_redis),
    ("005_config_entries", config_entries_migration),
    ("006_hmacauth_credentials", _new_tables),
    ("007_oauth2", _new_tables),
    ("008_consumer_groups", _consumer_groups),
    ("009_oauth2_issued_in_database", _oauth2_issued),
]


def _executed(conn: Connection, metadata: MetaData) -> list[str]:
    if not inspect(conn).has_table(MIGRATIONS_TABLE):
        return []
    table = metadata.tables[MIGRATIONS_TABLE]
    return list(conn.execute(select(table.c.name).order_by(table.c.name)).scalars())


def status(conn: Connection, metadata: MetaData) -> dict[str, Any]:
    executed = _executed(conn, metadata)
    pending = [name for name, _ in MIGRATIONS if name not in executed]
    return {"bootstrapped": bool(executed), "executed": executed, "pending": pending}


def bootstrap(conn: Connection, metadata: MetaData) -> list[str]:
    return up(conn, metadata, require_bootstrap=False)


def up(conn: Connection, metadata: MetaData, *, require_bootstrap: bool = True) -> list[str]:
    executed = _executed(conn, metadata)
    if require_bootstrap and not executed:
        raise StoreError("database needs bootstrapping; run 'meshway migrations bootstrap'")
    ran = []
    for name, step in MIGRATIONS:
        if name not in executed:
            step(conn, metadata)
            conn.execute(insert(metadata.tables[MIGRATIONS_TABLE]).values(name=name, executed_at=int(time.time())))
            ran.append(name)
    return ran
