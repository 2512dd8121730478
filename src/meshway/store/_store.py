"""The Store: entity CRUD, snapshot import/export and the change counter, on SQLite or PostgreSQL.

Rules:
- Every write runs in one transaction that also increments the `version` row, so `version()`
  changes on every write and two nodes on one PostgreSQL see each other's writes by polling it.
- Input is validated by the entity declaration; references, uniqueness and restricted deletes
  are checked in the same transaction, so errors carry Kong's messages; the database's own
  constraints (generated from the same declarations) are the backstop for races between nodes.
- Cascades (targets with their upstream, plugins with their route/service/consumer, snis with
  their certificate, credentials with their consumer) are ON DELETE CASCADE in the schema.
- A write the node could not run is no write: `admission` (set by the node) compiles the
  snapshot the transaction would commit, before the commit; a refusal is a 400 and the store is
  unchanged, so a config that validates but does not compile never reaches the workers (which
  would reject it, keep the previous config and reject every later one too).
- Thread-safe: SQLAlchemy pools connections; a process-wide lock serializes this process's writes
  (SQLite allows one writer anyway, and it keeps uniqueness checks free of races in-process).
"""
from __future__ import annotations

import json
import re
import threading
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sqlalchemy import Connection, Engine, delete, insert, inspect, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from meshway.model import (ENTITIES, Entity, EntityError, ForeignKeyViolation, NotFound, PrimaryKeyViolation,
                           ReferencedByOthers, SchemaViolation, UniqueViolation, empty_snapshot, has_references,
                           reference_errors)
from meshway.store import _migrations
from meshway.store._admin_tokens import ADMIN_TOKENS_TABLE, AdminTokens
from meshway.store._config_entries import ConfigEntries
from meshway.store._errors import StoreError
from meshway.store._mesh import MeshResources
from meshway.store._notify import notify_sql
from meshway.store._plugin_protocols import check_plugin_protocols
from meshway.store._query import decode_offset, paginate, parse_size
from meshway.store._tables import META_TABLE, build_metadata, cache_key, row_values

Parent = tuple[str, str]  # (foreign field name, parent id) for nested endpoints


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(value: str) -> bool:
    """An id in the dashed form only, as Kong's is_valid_uuid: a 32-hex endpoint key (a generated
    key-auth key, client_id or access_token) is that key, not an id."""
    return isinstance(value, str) and _UUID.match(value) is not None


class Store:
    """Entities in SQLite or PostgreSQL, behind one interface."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.metadata = build_metadata()
        self.tables = self.metadata.tables
        self._lock = threading.RLock()
        self._mesh: MeshResources | None = None
        self._config_entries: ConfigEntries | None = None
        self.admin_tokens = AdminTokens(engine, self.tables[ADMIN_TOKENS_TABLE])
        # the node's compile of a would-be snapshot (entities only): raises ValueError to refuse it
        self.admission: Callable[[dict[str, Any]], None] | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    # --- migrations -------------------------------------------------------------------------

    def migrations_status(self) -> dict[str, Any]:
        """`{"bootstrapped": bool, "executed": [...], "pending": [...]}`."""
        with self.engine.connect() as conn:
            return _migrations.status(conn, self.metadata)

    def bootstrap(self) -> None:
        """Create the schema and run every migration."""
        with self._lock, self.engine.begin() as conn:
            _migrations.bootstrap(conn, self.metadata)

    def up(self) -> list[str]:
        """Run pending migrations; return their names."""
        with self._lock, self.engine.begin() as conn:
            return _migrations.up(conn, self.metadata)

    def reset(self) -> None:
        """Drop every table this store created."""
        with self._lock, self.engine.begin() as conn:
            self.metadata.drop_all(conn)

    def is_bootstrapped(self) -> bool:
        with self.engine.connect() as conn:
            return inspect(conn).has_table(META_TABLE)

    def version(self) -> int:
        """A counter that changes on every write; cheap to poll."""
        meta = self.tables[META_TABLE]
        try:
            with self.engine.connect() as conn:
                value = conn.execute(select(meta.c.value).where(meta.c.key == "version")).scalar()
        except DBAPIError as e:
            raise StoreError(f"cannot read the store version: {_first_line(e)}") from None
        return int(value or 0)

    def reachable(self) -> bool:
        try:
            self.version()
        except Exception:  # any driver error means "not reachable" for /status
            return False
        return True

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except DBAPIError as e:
            raise StoreError(f"database error: {_first_line(e)}") from None

    @contextmanager
    def _consistent_read(self) -> Iterator[Connection]:
        """Several SELECTs that see one state: PostgreSQL snapshot isolation; on SQLite this
        process's write lock (one node owns a SQLite file)."""
        if self.dialect != "postgresql":
            with self._lock, self._read() as conn:
                yield conn
            return
        with self._read() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @property
    def mesh(self) -> "MeshResources":
        """Kuma's mesh resources (`Mesh`, `Dataplane`...), see `_mesh.py`."""
        if self._mesh is None:
            self._mesh = MeshResources(self)
        return self._mesh

    @property
    def config_entries(self) -> "ConfigEntries":
        """Consul's config entries (`proxy-defaults`, `service-resolver`...), see `_config_entries.py`."""
        if self._config_entries is None:
            self._config_entries = ConfigEntries(self)
        return self._config_entries

    def _next_version(self, conn: Connection) -> int:
        """Inside `_write`: the version this transaction commits (Consul's index of a change)."""
        meta = self.tables[META_TABLE]
        return int(conn.execute(select(meta.c.value).where(meta.c.key == "version")).scalar() or 0) + 1

    @contextmanager
    def _side_write(self) -> Iterator[Connection]:
        """A write that is not configuration (mesh insights): no version bump, no push."""
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    yield conn
            except DBAPIError as e:
                raise StoreError(f"database error: {_first_line(e)}") from None

    @contextmanager
    def _write(self, admit: bool = False) -> Iterator[Connection]:
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    yield conn
                    if admit and self.admission is not None:
                        self._admit(conn)
                    meta = self.tables[META_TABLE]
                    conn.execute(update(meta).where(meta.c.key == "version").values(value=meta.c.value + 1))
                    if self.dialect == "postgresql":  # the other nodes hear of it at commit (`_notify`)
                        conn.exec_driver_sql(notify_sql())
            except IntegrityError as e:  # a race with another node, or an import the schema refuses
                detail = _first_line(e)
                if "foreign key" in detail.lower():
                    raise ForeignKeyViolation(f"foreign key violation ({detail})") from None
                raise UniqueViolation(f"UNIQUE violation detected ({detail})") from None
            except DBAPIError as e:  # unreachable, not bootstrapped...: a 500 with the reason, not a traceback
                raise StoreError(f"database error: {_first_line(e)}") from None

    def _admit(self, conn: Connection) -> None:
        snapshot = self._export_entities(conn)
        try:
            self.admission(snapshot)
        except Exception as e:  # whatever a worker would reject it for
            reason = str(e) or type(e).__name__
            raise SchemaViolation({"@entity": [reason]},
                                  f"schema violation (the configuration cannot be applied: {reason})") from None

    # --- reads --------------------------------------------------------------------------------

    def list(self, collection: str, *, size: Any = None, offset: str | None = None, tags: str | None = None,
             parent: Parent | None = None) -> tuple[list[dict], str | None]:
        """One page of a collection (optionally under a parent) and the next offset."""
        table = self.tables[collection]
        query = select(table.c.body).order_by(table.c.id)
        if parent:
            query = query.where(table.c[f"{parent[0]}_id"] == parent[1])
        if not tags:  # without a tag filter the database pages for us: id > offset, one row more than asked
            limit = parse_size(size)
            if offset:
                query = query.where(table.c.id > decode_offset(offset))
            query, offset = query.limit(limit + 1), None
        with self._read() as conn:
            rows = [json.loads(b) for b in conn.execute(query).scalars()]
        return paginate(rows, size=size, offset=offset, tags=tags)

    def find(self, collection: str, key: str, *, parent: Parent | None = None) -> dict | None:
        """An entity by id or endpoint key (name, username...), or None."""
        with self._read() as conn:
            return self._find(conn, ENTITIES[collection], key, parent)

    def get(self, collection: str, key: str, *, parent: Parent | None = None) -> dict:
        found = self.find(collection, key, parent=parent)
        if found is None:
            raise NotFound()
        return found

    def _find(self, conn: Connection, entity: Entity, key: Any, parent: Parent | None) -> dict | None:
        table = self.tables[entity.name]
        if is_uuid(key):
            cond = table.c.id == str(uuid.UUID(key))
        elif entity.endpoint_key:
            cond = table.c[entity.endpoint_key] == key
        else:
            return None
        query = select(table.c.body).where(cond)
        if parent:
            query = query.where(table.c[f"{parent[0]}_id"] == parent[1])
        body = conn.execute(query.limit(1)).scalar()
        return json.loads(body) if body is not None else None

    # --- writes -------------------------------------------------------------------------------

    def insert(self, collection: str, data: dict, *, parent: Parent | None = None) -> dict:
        """Validate and create an entity (POST)."""
        entity = ENTITIES[collection]
        data, companions = split_companions(entity, data)
        with self._write(admit=True) as conn:
            row = entity.validate(self._prepare(conn, entity, data, parent))
            if self._exists(conn, entity, row["id"]):
                raise PrimaryKeyViolation(f"primary key violation on key '{{id=\"{row['id']}\"}}'", {"id": row["id"]})
            self._check(conn, entity, row)
            conn.execute(insert(self.tables[collection]).values(row_values(entity, row)))
            self._sync_companions(conn, entity, row["id"], companions)
        return row

    def update(self, collection: str, key: str, patch: dict, *, parent: Parent | None = None) -> dict:
        """Validate and merge a partial update (PATCH)."""
        entity = ENTITIES[collection]
        patch, companions = split_companions(entity, patch)
        with self._write(admit=True) as conn:
            existing = self._find(conn, entity, key, parent)
            if existing is None:
                raise NotFound()
            patch = self._prepare(conn, entity, patch, parent)
            if isinstance(patch, dict):
                patch.pop("id", None)  # the path names the entity; a body id cannot move it
            row = entity.validate(patch, existing=existing)
            self._check(conn, entity, row)
            self._replace(conn, entity, row)
            self._sync_companions(conn, entity, row["id"], companions)
        return row

    def upsert(self, collection: str, key: str, data: dict, *, parent: Parent | None = None) -> dict:
        """Create or replace by id or endpoint key (PUT)."""
        entity = ENTITIES[collection]
        data, companions = split_companions(entity, data)
        with self._write(admit=True) as conn:
            data = self._prepare(conn, entity, data, parent)
            if not isinstance(data, dict):
                entity.validate(data)  # raises the schema violation
            existing = self._find(conn, entity, key, parent)
            if is_uuid(key):
                data["id"] = key
            elif entity.endpoint_key:
                data[entity.endpoint_key] = key
            if existing is not None:
                data.update(id=existing["id"], created_at=existing["created_at"])
            row = entity.validate(data)
            self._check(conn, entity, row)
            if existing is None:
                conn.execute(insert(self.tables[collection]).values(row_values(entity, row)))
            else:
                self._replace(conn, entity, row)
            self._sync_companions(conn, entity, row["id"], companions)
        return row

    def delete(self, collection: str, key: str, *, parent: Parent | None = None) -> bool:
        """Delete (cascading where declared); False when nothing matched."""
        entity = ENTITIES[collection]
        with self._write(admit=True) as conn:
            existing = self._find(conn, entity, key, parent)
            if existing is None:
                return False
            self._check_not_referenced(conn, entity, existing["id"])
            table = self.tables[collection]
            conn.execute(delete(table).where(table.c.id == existing["id"]))
        return True

    def insert_all(self, collection: str, items: list[dict]) -> list[dict]:
        """Create several entities in one transaction: all of them or none (consumer group memberships)."""
        entity = ENTITIES[collection]
        with self._write(admit=True) as conn:
            rows = []
            for data in items:
                row = entity.validate(data)
                self._check(conn, entity, row)
                conn.execute(insert(self.tables[collection]).values(row_values(entity, row)))
                rows.append(row)
        return rows

    def delete_ids(self, collection: str, ids: list[str]) -> None:
        """Delete these entities (cascading where declared) in one transaction."""
        table = self.tables[collection]
        with self._write(admit=True) as conn:
            conn.execute(delete(table).where(table.c.id.in_(ids)))

    def _sync_companions(self, conn: Connection, entity: Entity, parent_id: str, companions: dict) -> None:
        """Make the children named by a companion list exactly those (Kong's certificate `snis`)."""
        for field, keys in companions.items():
            comp = entity.companions[field]
            child, table = ENTITIES[comp.collection], self.tables[comp.collection]
            fk = table.c[f"{comp.parent_field}_id"]
            current = {b[comp.key]: b for b in map(json.loads, conn.execute(select(table.c.body).where(fk == parent_id)).scalars())}
            for key, body in current.items():
                if key not in keys:
                    conn.execute(delete(table).where(table.c.id == body["id"]))
            for i, key in enumerate(keys):
                if key not in current:
                    self._insert_companion(conn, child, comp, parent_id, field, i, key)

    def _insert_companion(self, conn: Connection, child: Entity, comp: Any, parent_id: str, field: str, i: int,
                          key: str) -> None:
        try:
            row = child.validate({comp.key: key, comp.parent_field: {"id": parent_id}})
        except SchemaViolation as e:
            raise SchemaViolation({field: {i: e.fields.get(comp.key, e.message)}}) from None
        self._check(conn, child, row)
        conn.execute(insert(self.tables[child.name]).values(row_values(child, row)))

    def _replace(self, conn: Connection, entity: Entity, row: dict) -> None:
        table = self.tables[entity.name]
        conn.execute(update(table).where(table.c.id == row["id"]).values(row_values(entity, row)))

    def _exists(self, conn: Connection, entity: Entity, entity_id: str) -> bool:
        table = self.tables[entity.name]
        return conn.execute(select(table.c.id).where(table.c.id == entity_id)).first() is not None

    def _prepare(self, conn: Connection, entity: Entity, data: Any, parent: Parent | None) -> Any:
        """Set the parent of a nested endpoint; resolve references by name to ids."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if parent:
            data[parent[0]] = {"id": parent[1]}
        for fname, field in entity.foreign_fields.items():
            ref = data.get(fname)
            if isinstance(ref, dict) and "id" not in ref and len(ref) == 1:
                data[fname] = self._resolve_name(conn, fname, field.reference, ref)
        return data

    def _resolve_name(self, conn: Connection, fname: str, reference: str, ref: dict) -> dict:
        key, value = next(iter(ref.items()))
        target = ENTITIES[reference]
        found = self._find(conn, target, value, None) if target.endpoint_key == key and isinstance(value, str) else None
        if found is None:
            raise ForeignKeyViolation(
                f"the foreign key '{{{key}=\"{value}\"}}' does not reference an existing '{reference}' entity.",
                {fname: ref})
        return {"id": found["id"]}

    def _check(self, conn: Connection, entity: Entity, row: dict) -> None:
        self._check_references(conn, entity, row)
        self._check_unique(conn, entity, row)
        self._check_vault_references(conn, entity, row)
        if entity.name == "plugins":
            check_plugin_protocols(conn, self.tables, row)

    def _check_vault_references(self, conn: Connection, entity: Entity, row: dict) -> None:
        """A `{vault://...}` value must resolve now (a 400 naming the field), with the stored vaults."""
        if not has_references(entity.name, row):
            return
        vaults = [json.loads(b) for b in conn.execute(select(self.tables["vaults"].c.body)).scalars()]
        errors = reference_errors(entity.name, row, vaults)
        if errors:
            raise SchemaViolation(errors)

    def _check_references(self, conn: Connection, entity: Entity, row: dict) -> None:
        for fname, field in entity.foreign_fields.items():
            ref = row.get(fname)
            if ref and not self._exists(conn, ENTITIES[field.reference], ref["id"]):
                raise ForeignKeyViolation(
                    f"the foreign key '{{id=\"{ref['id']}\"}}' does not reference an existing '{field.reference}' entity.",
                    {fname: ref})

    def _check_unique(self, conn: Connection, entity: Entity, row: dict) -> None:
        table = self.tables[entity.name]
        for name in entity.unique_fields:
            value = row.get(name)
            if value is not None and self._taken(conn, table.c[name] == value, row["id"], table):
                raise UniqueViolation(f"UNIQUE violation detected on '{{{name}={_lua(value)}}}'", {name: value})
        if entity.cache_key and self._taken(conn, table.c.cache_key == cache_key(entity, row), row["id"], table):
            shown = ",".join(f"{f}={_lua(row.get(f))}" for f in sorted(entity.cache_key))
            raise UniqueViolation(f"UNIQUE violation detected on '{{{shown}}}'", {f: row.get(f) for f in entity.cache_key})

    @staticmethod
    def _taken(conn: Connection, cond: Any, own_id: str, table: Any) -> bool:
        return conn.execute(select(table.c.id).where(cond, table.c.id != own_id).limit(1)).first() is not None

    def _check_not_referenced(self, conn: Connection, entity: Entity, entity_id: str) -> None:
        if entity.name == "ca_certificates":
            self._check_ca_not_used(conn, entity_id)
        for other in ENTITIES.values():
            for fname, field in other.foreign_fields.items():
                if field.reference != entity.name or field.on_delete != "restrict":
                    continue
                table = self.tables[other.name]
                if conn.execute(select(table.c.id).where(table.c[f"{fname}_id"] == entity_id).limit(1)).first():
                    raise ForeignKeyViolation(
                        f"an existing '{other.name}' entity references this '{entity.name}' entity",
                        {"@referenced_by": other.name})

    def _check_ca_not_used(self, conn: Connection, ca_id: str) -> None:
        """Kong's ca_certificates:delete(): refused while a service lists it in `ca_certificates`."""
        table = self.tables["services"]
        for body in conn.execute(select(table.c.body).where(table.c.body.contains(ca_id))).scalars():
            service = json.loads(body)
            if ca_id in (service.get("ca_certificates") or ()):
                raise ReferencedByOthers(
                    f"ca certificate {ca_id} is still referenced by services (id = {service['id']})")

    # --- snapshots ----------------------------------------------------------------------------

    def export_snapshot(self) -> dict[str, Any]:
        """Every entity, as the normalized snapshot (collections sorted by id)."""
        with self._consistent_read() as conn:
            snapshot = self._export_entities(conn)
            zones = self.config_entries.zones_section(conn)  # gateways, federated zones
            from meshway.zones._catalog import remote_services  # their services' VIPs resolve here too

            snapshot["mesh_resources"] = self.mesh.snapshot_section(conn, elsewhere=remote_services(zones))
            snapshot["config_entries"] = self.config_entries.snapshot_section(conn)
            snapshot["zones"] = zones
        return snapshot

    def _export_entities(self, conn: Connection) -> dict[str, Any]:
        snapshot = empty_snapshot()
        for name in ENTITIES:
            table = self.tables[name]
            snapshot[name] = [json.loads(b) for b in conn.execute(select(table.c.body).order_by(table.c.id)).scalars()]
        return snapshot

    def import_snapshot(self, snapshot: dict[str, Any], *, replace: bool = True) -> None:
        """Load a normalized snapshot in one transaction; with replace, everything else is removed."""
        with self._write(admit=True) as conn:
            if replace:
                for name in reversed(list(ENTITIES)):
                    conn.execute(delete(self.tables[name]))
            for name, entity in ENTITIES.items():
                for row in snapshot.get(name) or []:
                    self._import_row(conn, entity, row, replace)
            if snapshot.get("mesh_resources") is not None and "meshes" in snapshot["mesh_resources"]:
                self.mesh.import_section(conn, snapshot["mesh_resources"])  # same transaction

    def replace_tagged(self, snapshot: dict[str, Any], tags: list[str]) -> None:
        """In one transaction, replace the entities carrying every one of `tags` with the snapshot's.

        decK's `--select-tag` sync, made atomic: every other entity stays as it was. An untagged entity
        that points at a tagged one the snapshot drops (a user's route on a tagged service) refuses
        the whole replace, naming it, instead of being deleted with it or left dangling.
        """
        wanted = set(tags)
        with self._write(admit=True) as conn:
            rows = {name: [json.loads(b) for b in conn.execute(select(self.tables[name].c.body)).scalars()]
                    for name in ENTITIES}
            tagged = {name: {r["id"] for r in found if wanted <= set(r.get("tags") or [])}
                      for name, found in rows.items()}
            kept = {name: {r["id"] for r in snapshot.get(name) or []} for name in ENTITIES}
            _refuse_dangling(rows, tagged, {name: tagged[name] - kept[name] for name in ENTITIES})
            for name in reversed(list(ENTITIES)):  # the tagged entities the snapshot drops, children first
                if tagged[name] - kept[name]:
                    table = self.tables[name]
                    conn.execute(delete(table).where(table.c.id.in_(sorted(tagged[name] - kept[name]))))
            for name, entity in ENTITIES.items():  # the others are written in place: what points at them stays
                for row in snapshot.get(name) or []:
                    if row["id"] in tagged[name]:
                        self._replace(conn, entity, row)
                    else:
                        conn.execute(insert(self.tables[name]).values(row_values(entity, row)))

    def _import_row(self, conn: Connection, entity: Entity, row: dict, replace: bool) -> None:
        if not replace and self._exists(conn, entity, row["id"]):
            self._replace(conn, entity, row)
        else:
            conn.execute(insert(self.tables[entity.name]).values(row_values(entity, row)))


def _refuse_dangling(rows: dict[str, list[dict]], tagged: dict[str, set], gone: dict[str, set]) -> None:
    """ForeignKeyViolation naming the first untagged entity that points at an entity in `gone`."""
    for name, entity in ENTITIES.items():
        for row in rows[name]:
            if row["id"] in tagged[name]:
                continue
            for field_name, field in entity.foreign_fields.items():
                ref = row.get(field_name)
                if isinstance(ref, dict) and ref.get("id") in gone[field.reference]:
                    key = row.get(entity.endpoint_key or "id") or row["id"]
                    raise ForeignKeyViolation(
                        f"the untagged {name} entity '{key}' ({field_name}) references the tagged "
                        f"{field.reference} entity '{ref['id']}' this configuration removes")


def split_companions(entity: Entity, data: Any) -> tuple[Any, dict[str, list[str]]]:
    """Take companion lists (certificate `snis`) out of the input; they are written as children."""
    if not entity.companions or not isinstance(data, dict):
        return data, {}
    data, found = dict(data), {}
    for field in entity.companions:
        if field in data:
            keys = data.pop(field) or []
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise SchemaViolation({field: "expected a set of strings"})
            found[field] = list(dict.fromkeys(keys))
    return data, found


def _lua(value: Any) -> str:
    """A value as Kong prints it in unique-violation messages."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_lua(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, str):
        return f'"{value}"'
    return json.dumps(value)


def _first_line(err: Exception) -> str:
    return str(getattr(err, "orig", err)).split("\n")[0]


__all__ = ["EntityError", "Store", "StoreError"]
