"""Consul's config entries in the store (`meshway config write`, `/v1/config`).

One table, `config_entries` (kind, name, body JSON, Consul's CreateIndex/ModifyIndex, timestamps),
created by migration `005_config_entries`. Writes go through the store's write transaction, so
they bump the version and the node re-exports and pushes the snapshot; the indexes are that
version (as Consul's are its Raft index), so they grow with every change anywhere in the store.
Entries reach the snapshot as `config_entries` (sorted by kind and name, without indexes, so
that reading them does not move the hash). Validation happens before: `meshway.zones.check_entry`.

The same table keeps the zone's own records, under kinds that start with `_` (no Consul kind
does, and `/v1/config` refuses them): `_gateway` (mesh gateways registered in this zone) and
`_zone` (what federation learnt of the other zones). They reach the snapshot as `zones`, not
`config_entries`, and `put_record` writes only a change, so a gateway's heartbeat or an
unchanged federation poll does not bump the version (nor push anything).
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, and_, delete, insert, select, update

if TYPE_CHECKING:
    from meshway.store._store import Store

TABLE = "config_entries"
RECORD = "_"  # kinds of the zone's own records


def define_table(metadata: MetaData) -> Table:
    return Table(TABLE, metadata,
                 Column("kind", String(64), primary_key=True), Column("name", String(253), primary_key=True),
                 Column("body", Text, nullable=False), Column("create_index", BigInteger, nullable=False),
                 Column("modify_index", BigInteger, nullable=False),
                 Column("created_at", BigInteger), Column("updated_at", BigInteger))


def migrate(conn, metadata: MetaData) -> None:
    """`005_config_entries` (`000_base` already made it on newer databases)."""
    metadata.tables[TABLE].create(conn, checkfirst=True)


class ConfigEntries:
    """CRUD of config entries over one Store (its engine, lock and version counter)."""

    datacenter = "dc1"  # this zone's name (`open_store` sets the node's), carried in `zones`

    def __init__(self, store: "Store") -> None:
        self._store = store
        self.table = store.tables[TABLE]

    def _key(self, kind: str, name: str):
        return and_(self.table.c.kind == kind, self.table.c.name == name)

    @staticmethod
    def _row(r) -> dict[str, Any]:
        return {"entry": json.loads(r.body), "create_index": r.create_index, "modify_index": r.modify_index}

    def list(self, kind: str) -> list[dict[str, Any]]:
        t = self.table
        with self._store._read() as conn:
            return [self._row(r) for r in conn.execute(select(t).where(t.c.kind == kind).order_by(t.c.name))]

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        with self._store._read() as conn:
            r = conn.execute(select(self.table).where(self._key(kind, name))).first()
        return self._row(r) if r is not None else None

    def put(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a checked entry; the stored row (entry and indexes)."""
        kind, name = entry["Kind"], entry["Name"]
        text, now = json.dumps(entry, sort_keys=True), int(time.time())
        with self._store._write() as conn:
            index = self._store._next_version(conn)
            old = conn.execute(select(self.table.c.body).where(self._key(kind, name))).first()
            if old is None:
                conn.execute(insert(self.table).values(kind=kind, name=name, body=text, create_index=index,
                                                       modify_index=index, created_at=now, updated_at=now))
            elif old.body != text:
                conn.execute(update(self.table).where(self._key(kind, name))
                             .values(body=text, modify_index=index, updated_at=now))
            r = conn.execute(select(self.table).where(self._key(kind, name))).first()
        return self._row(r)

    def delete(self, kind: str, name: str) -> bool:
        with self._store._write() as conn:
            return conn.execute(delete(self.table).where(self._key(kind, name))).rowcount > 0

    def snapshot_section(self, conn) -> list[dict[str, Any]]:
        t = self.table
        own = ~t.c.kind.startswith(RECORD, autoescape=True)
        rows = conn.execute(select(t.c.body).where(own).order_by(t.c.kind, t.c.name))
        return [json.loads(b) for b in rows.scalars()]

    # ---- the zone's own records (`_gateway`, `_zone`) -------------------------------------
    def records(self, kind: str) -> list[dict[str, Any]]:
        t = self.table
        with self._store._read() as conn:
            return [json.loads(b) for b in conn.execute(select(t.c.body).where(t.c.kind == kind)
                                                         .order_by(t.c.name)).scalars()]

    def put_record(self, kind: str, name: str, body: dict[str, Any]) -> bool:
        """Store a record when it changed (True); an identical one costs one read and no version."""
        assert kind.startswith(RECORD)
        text = json.dumps({**body, "Kind": kind, "Name": name}, sort_keys=True)  # as `put` stores it
        with self._store._read() as conn:
            old = conn.execute(select(self.table.c.body).where(self._key(kind, name))).first()
        if old is not None and old.body == text:
            return False
        self.put({**body, "Kind": kind, "Name": name})
        return True

    def zones_section(self, conn) -> dict[str, Any]:
        t = self.table
        out: dict[str, Any] = {"datacenter": self.datacenter, "gateways": [], "remote": []}
        for kind, body in conn.execute(select(t.c.kind, t.c.body).where(t.c.kind.startswith(RECORD, autoescape=True))
                                       .order_by(t.c.kind, t.c.name)):
            key = {"_gateway": "gateways", "_zone": "remote"}.get(kind)
            if key:
                out[key].append(json.loads(body))
        return out
