"""Mesh resources in the store: Kuma's `Mesh`, `Dataplane`, their insights, VIPs and token revocations.

Rules:
- One table, `mesh_resources` (type, mesh, name, body JSON, timestamps), keyed by (type, mesh,
  name), created by migration `001_mesh_resources`, which also creates the `default` mesh (as
  Kuma's control plane does on first start). A `Mesh` row has mesh = its own name.
- Writes of `Mesh` and `Dataplane` go through the store's write transaction, so they bump the
  version: the node's poller re-exports the snapshot (`mesh_resources` section) and pushes it.
  A Dataplane's services get their VIPs (`meshway.mesh._vips`) in the same transaction.
- Insights (connection times, counters, certificate) change often and are not configuration:
  they are written without bumping the version and are not in the snapshot.
- Deleting a mesh deletes everything in it (Kuma's behaviour).
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger, Column, MetaData, String, Table, Text, and_, bindparam, delete, insert, select, update,
)

from meshway.mesh import _vips
from meshway.mesh._resources import POLICY_TYPES, default_mesh, services

if TYPE_CHECKING:
    from meshway.store._store import Store

TABLE = "mesh_resources"
INSIGHT = "DataplaneInsight"
VIPS = "VirtualIPs"
REVOCATIONS = "TokenRevocations"
SECRET = "Secret"  # a mesh CA's certificate or key (`{mesh}.ca-builtin-cert-{backend}`, Kuma's names)
GLOBAL = ""  # rows of the control plane itself, in no mesh (a mesh name is never empty): never exported
CP_CA = "ControlPlaneCA"  # the mesh CA every control plane node on this database uses (`mesh._sharedca`)
INSTANCE = "ControlPlaneInstance"  # a control plane node's heartbeat (`mesh._instances`)


class MeshNotFound(LookupError):
    """A resource names a mesh that does not exist."""


def define_table(metadata: MetaData) -> Table:
    return Table(TABLE, metadata,
                 Column("type", String(32), primary_key=True), Column("mesh", String(253), primary_key=True),
                 Column("name", String(253), primary_key=True), Column("body", Text, nullable=False),
                 Column("created_at", BigInteger), Column("updated_at", BigInteger))


def migrate(conn, metadata: MetaData) -> None:
    """`001_mesh_resources`: the table (if `000_base` did not already make it) and the default mesh."""
    table = metadata.tables[TABLE]
    table.create(conn, checkfirst=True)
    if conn.execute(select(table.c.name).where(table.c.type == "Mesh").limit(1)).first() is None:
        now = int(time.time())
        conn.execute(insert(table).values(type="Mesh", mesh="default", name="default", created_at=now, updated_at=now,
                                          body=json.dumps(default_mesh())))


def _iso(ts: int | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


def _row(r) -> dict[str, Any]:
    body = json.loads(r.body)
    keys = {} if r.type == "Mesh" else {"mesh": r.mesh, "name": r.name}  # insights and VIPs keep only their data
    return {**keys, **body, "creationTime": _iso(r.created_at), "modificationTime": _iso(r.updated_at)}


class MeshResources:
    """CRUD of mesh resources over one Store (its engine, lock and version counter)."""

    def __init__(self, store: "Store") -> None:
        self._store = store
        self.table = store.tables[TABLE]

    # ---- reads ------------------------------------------------------------------------------
    def list(self, rtype: str, mesh: str | None = None) -> list[dict[str, Any]]:
        t = self.table
        query = select(t).where(t.c.type == rtype).order_by(t.c.mesh, t.c.name)
        if mesh is not None:
            query = query.where(t.c.mesh == mesh)
        with self._store._read() as conn:
            return [_row(r) for r in conn.execute(query)]

    def get(self, rtype: str, mesh: str, name: str) -> dict[str, Any] | None:
        with self._store._read() as conn:
            r = conn.execute(select(self.table).where(self._key(rtype, mesh, name))).first()
        return _row(r) if r is not None else None

    def _key(self, rtype: str, mesh: str, name: str):
        t = self.table
        return and_(t.c.type == rtype, t.c.mesh == mesh, t.c.name == name)

    # ---- writes (bump the version) -----------------------------------------------------------
    def put(self, resource: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create or replace a checked resource (see `parse_resource`); (stored, created)."""
        rtype, name = resource["type"], resource["name"]
        mesh = name if rtype == "Mesh" else resource["mesh"]
        with self._store._write() as conn:
            if rtype != "Mesh" and not self._exists(conn, "Mesh", mesh, mesh):
                raise MeshNotFound(f"mesh of name {mesh} is not found")
            created = self._upsert(conn, rtype, mesh, name, resource)
            if rtype == "Mesh":  # its mTLS backends' CAs, as Kuma's secrets (meshway.mesh._mtls)
                self._put_ca_secrets(conn, resource)
            if rtype == "Dataplane":
                self._reserve_vips(conn, mesh, services(resource))
            r = conn.execute(select(self.table).where(self._key(rtype, mesh, name))).first()
        return _row(r), created

    def delete(self, rtype: str, mesh: str, name: str) -> bool:
        with self._store._write() as conn:
            gone = conn.execute(delete(self.table).where(self._key(rtype, mesh, name))).rowcount > 0
            if rtype == "Mesh" and gone:
                conn.execute(delete(self.table).where(self.table.c.mesh == mesh))
            if rtype == "Dataplane":
                conn.execute(delete(self.table).where(self._key(INSIGHT, mesh, name)))
        return gone

    def _exists(self, conn, rtype: str, mesh: str, name: str) -> bool:
        return conn.execute(select(self.table.c.name).where(self._key(rtype, mesh, name))).first() is not None

    def _upsert(self, conn, rtype: str, mesh: str, name: str, body: dict[str, Any]) -> bool:
        now, text = int(time.time()), json.dumps(body, sort_keys=True)
        old = conn.execute(select(self.table.c.body).where(self._key(rtype, mesh, name))).first()
        if old is None:
            conn.execute(insert(self.table).values(type=rtype, mesh=mesh, name=name, body=text, created_at=now,
                                                   updated_at=now))
            return True
        if old.body != text:
            conn.execute(update(self.table).where(self._key(rtype, mesh, name)).values(body=text, updated_at=now))
        return False

    def _put_ca_secrets(self, conn, resource: dict[str, Any]) -> None:
        from meshway.mesh._mtls import new_secrets

        t, mesh = self.table, resource["name"]
        have = {r.name for r in conn.execute(select(t.c.name).where(and_(t.c.type == SECRET, t.c.mesh == mesh)))}
        for secret in new_secrets(resource, have):
            self._upsert(conn, SECRET, mesh, secret["name"], secret)

    def _reserve_vips(self, conn, mesh: str, wanted: list[str]) -> None:
        name = f"kuma-{mesh}-dns-vips"
        old = conn.execute(select(self.table.c.body).where(self._key(VIPS, mesh, name))).first()
        current = json.loads(old.body) if old else {}
        new = _vips.allocate(current, wanted)
        if new != current:
            self._upsert(conn, VIPS, mesh, name, new)

    def reserve_vips(self, mesh: str, services: list[str]) -> bool:
        """VIPs for `services` of `mesh` (those other zones report: meshway.zones), if the mesh is
        here; a write only when one is new (True)."""
        name = f"kuma-{mesh}-dns-vips"
        with self._store._read() as conn:
            if not self._exists(conn, "Mesh", mesh, mesh):
                return False
            old = conn.execute(select(self.table.c.body).where(self._key(VIPS, mesh, name))).first()
        current = json.loads(old.body) if old else {}
        if not [s for s in services if s and s not in current]:
            return False
        with self._store._write() as conn:
            self._reserve_vips(conn, mesh, services)
        return True

    def import_section(self, conn, section: dict[str, Any]) -> None:
        """Replace the meshes, data planes and policies by a declarative file's (db_import), inside
        the caller's write transaction. VIPs, insights and CA secrets of meshes that stay are kept."""
        t = self.table
        conn.execute(delete(t).where(t.c.type.in_(("Mesh", "Dataplane", *POLICY_TYPES))))
        kept = {m["name"] for m in section.get("meshes") or ()} | {GLOBAL}
        conn.execute(delete(t).where(t.c.mesh.not_in(kept)))
        for resource in [*(section.get("meshes") or ()), *(section.get("dataplanes") or ()),
                         *(section.get("policies") or ())]:
            rtype, name = resource["type"], resource["name"]
            mesh = name if rtype == "Mesh" else resource["mesh"]
            self._upsert(conn, rtype, mesh, name, {k: v for k, v in resource.items()
                                                  if k not in ("creationTime", "modificationTime")})
            if rtype == "Mesh":
                self._put_ca_secrets(conn, resource)
            if rtype == "Dataplane":
                self._reserve_vips(conn, mesh, services(resource))

    # ---- insights and revocations: status, not configuration (no version bump) ---------------
    def _side_write(self):
        return self._store._side_write()

    def update_insight(self, mesh: str, name: str, change) -> dict[str, Any]:
        """`change(current insight or None)` stored, read and written under the row's lock: the
        control plane nodes on one database update a data plane's insight without losing each
        other's changes (a node the data plane left, the node it moved to)."""
        from meshway.store._errors import StoreError

        for attempt in (1, 2):  # the row's first insert may race another node's: then it exists
            try:
                with self._side_write() as conn:
                    row = conn.execute(select(self.table.c.body).where(self._key(INSIGHT, mesh, name))
                                       .with_for_update()).first()
                    new = change(json.loads(row.body) if row is not None else None)
                    self._upsert(conn, INSIGHT, mesh, name, new)
                    return new
            except StoreError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def update_insights(self, changes: dict[tuple[str, str], Any]) -> None:
        """Several data planes' `change(insight)` in one transaction: one read of their rows, locked in
        key order (as two nodes' batches then lock alike), one batched update; a missing row stays
        missing (its Dataplane was deleted)."""
        t = self.table
        with self._side_write() as conn:
            rows = conn.execute(select(t.c.mesh, t.c.name, t.c.body)
                                .where(t.c.type == INSIGHT, t.c.mesh.in_({m for m, _ in changes}),
                                       t.c.name.in_({n for _, n in changes}))
                                .order_by(t.c.mesh, t.c.name).with_for_update())
            current = {(r.mesh, r.name): r.body for r in rows}
            params = [{"m": mesh, "n": name, "b": json.dumps(change(json.loads(current[(mesh, name)])), sort_keys=True)}
                      for (mesh, name), change in changes.items() if (mesh, name) in current]
            if params:
                conn.execute(update(t).where(t.c.type == INSIGHT, t.c.mesh == bindparam("m"), t.c.name == bindparam("n"))
                             .values(body=bindparam("b"), updated_at=int(time.time())), params)

    def insight(self, mesh: str, name: str) -> dict[str, Any] | None:
        found = self.get(INSIGHT, mesh, name)
        if found is None:
            return None
        return {k: v for k, v in found.items() if k not in ("mesh", "name", "creationTime", "modificationTime")}

    def revoke(self, mesh: str, token_id: str) -> None:
        with self._store._write() as conn:
            old = conn.execute(select(self.table.c.body).where(self._key(REVOCATIONS, mesh, "tokens"))).first()
            ids = sorted(set(json.loads(old.body)["ids"] if old else []) | {token_id})
            self._upsert(conn, REVOCATIONS, mesh, "tokens", {"ids": ids})

    def revoked(self, mesh: str) -> set[str]:
        found = self.get(REVOCATIONS, mesh, "tokens")
        return set(found["ids"]) if found else set()

    # ---- the control plane's own rows (no version bump, never exported) -------------------------
    def control_plane_ca(self, offered: dict[str, str]) -> dict[str, str]:
        """The stored control plane CA ({"cert", "key"} PEM); `offered` is stored when there is none.
        Another node inserting at the same moment makes ours fail: then its row is read."""
        from meshway.store._errors import StoreError

        for attempt in (1, 2):
            try:
                with self._side_write() as conn:
                    row = conn.execute(select(self.table.c.body).where(self._key(CP_CA, GLOBAL, "meshway"))).first()
                    if row is not None:
                        return json.loads(row.body)
                    self._upsert(conn, CP_CA, GLOBAL, "meshway", offered)
                    return offered
            except StoreError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def beat(self, instance: str, body: dict[str, Any]) -> None:
        """A control plane node's heartbeat (its body carries the time)."""
        with self._side_write() as conn:
            self._upsert(conn, INSTANCE, GLOBAL, instance, body)

    def instances(self) -> dict[str, dict[str, Any]]:
        """Every control plane node's last heartbeat, by instance id."""
        t = self.table
        with self._store._read() as conn:
            rows = conn.execute(select(t.c.name, t.c.body).where(and_(t.c.type == INSTANCE, t.c.mesh == GLOBAL)))
            return {r.name: json.loads(r.body) for r in rows}

    def forget_instance(self, instance: str) -> None:
        with self._side_write() as conn:
            conn.execute(delete(self.table).where(self._key(INSTANCE, GLOBAL, instance)))

    # ---- the snapshot's section --------------------------------------------------------------
    def snapshot_section(self, conn, elsewhere: dict[str, set[str]] | None = None) -> dict[str, Any]:
        """`{"meshes": [...], "dataplanes": [...], "vips": {mesh: {service: ip}}}` (visible VIPs only:
        of services some data plane provides, here or, `elsewhere`, in another zone)."""
        t = self.table
        rows = conn.execute(select(t).where(t.c.type.in_(("Mesh", "Dataplane", VIPS, SECRET, *POLICY_TYPES)))
                            .order_by(t.c.mesh, t.c.name))
        meshes, dataplanes, policies, reserved, secrets = [], [], [], {}, {}
        for r in rows:
            body = json.loads(r.body)
            if r.type == VIPS:
                reserved[r.mesh] = body
            elif r.type == SECRET:  # never pushed: only the CA certificates, as trust (below)
                if "-cert-" in r.name:
                    secrets[(r.mesh, r.name)] = body
            else:
                {"Mesh": meshes, "Dataplane": dataplanes}.get(r.type, policies).append(body)
        present: dict[str, set[str]] = {m["name"]: set((elsewhere or {}).get(m["name"]) or ()) for m in meshes
                                         if (elsewhere or {}).get(m["name"])}
        for dp in dataplanes:
            present.setdefault(dp["mesh"], set()).update(services(dp))
        vips = {m: _vips.visible(reserved.get(m, {}), present.get(m, ())) for m in sorted(present)}
        from meshway.mesh._mtls import trust_bundles

        out = {"meshes": meshes, "dataplanes": dataplanes, "policies": policies, "vips": vips}
        trust = trust_bundles(meshes, secrets)
        if trust:
            out["trust"] = trust
        return out

