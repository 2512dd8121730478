"""`policy: cluster` of rate-limiting and response-ratelimiting: counters in the node's PostgreSQL.

Kong keeps cluster counters in its database (`ratelimiting_metrics`), so every node on that
database shares one limit. Rules here:
- One table, `plugin_counters (key text primary key, value bigint, expires timestamptz)`, created on
  first use (under an advisory lock, so nodes starting together do not race). A key names the
  plugin, route, service, identifier, window start and period, as the other policies' keys do, so
  a window's row is never reused by the next window; expired rows are deleted now and then.
- Each worker holds one autocommit connection per event loop (psycopg's AsyncConnection runs
  one query at a time; concurrent requests wait their turn). A query that fails or takes longer
  than `pg_timeout` raises: the plugin's `fault_tolerant` decides, as with redis.
- `take` reads the windows' counts and counts this request only when all are under their limits
  (Kong's order: a refused request is not counted). Read and count are two statements, so two
  nodes may both take the last slot, as with Kong's cluster policy.
- Only a node whose database is PostgreSQL, in the traditional role, can use it: Kong's schema
  offers `cluster` only when the node has a database and is not a control plane, and says
  `expected one of: local, redis` otherwise (`check_cluster_policy`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Sequence

log = logging.getLogger("meshway.plugins")

TABLE = "plugin_counters"
_CREATE = f"""
SELECT pg_advisory_xact_lock(7231440991);
CREATE TABLE IF NOT EXISTS {TABLE} (key text PRIMARY KEY, value bigint NOT NULL, expires timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS {TABLE}_expires ON {TABLE} (expires);
"""
_SELECT = f"SELECT key, value FROM {TABLE} WHERE key = ANY(%s) AND expires > now()"
_UPSERT = f"""
INSERT INTO {TABLE} AS c (key, value, expires)
SELECT k, n, to_timestamp(e) FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS t(k, n, e) WHERE n <> 0
ON CONFLICT (key) DO UPDATE
  SET value = CASE WHEN c.expires > now() THEN c.value + EXCLUDED.value ELSE EXCLUDED.value END,
      expires = EXCLUDED.expires
"""
_SWEEP = f"DELETE FROM {TABLE} WHERE expires < now() - interval '1 minute'"
SWEEP_EVERY = 60.0

# The node's database, set by the node (master and workers) from its settings; None outside a node.
_node: dict[str, Any] | None = None


def set_node_database(settings: Any) -> None:
    """Called once per process of a node: which database it has, its role, how to reach PostgreSQL."""
    global _node
    _node = {
        "database": settings.database, "role": settings.role,
        "conninfo": {"host": settings.pg_host, "port": settings.pg_port, "user": settings.pg_user,
                     "password": settings.pg_password or None, "dbname": settings.pg_database},
        "timeout": max(0.1, int(getattr(settings, "pg_timeout", 5000)) / 1000),
        "sqlite_path": str(getattr(settings, "sqlite_path", "") or ""),
        # Not the database's, but the node's other fact plugins need (acme verifies its CA with it).
        "trusted": str(getattr(settings, "lua_ssl_trusted_certificate", "") or ""),
    }


def check_cluster_policy(policy: str) -> None:
    """Kong's schema: `cluster` is not among the policies of a DB-less node or a control plane."""
    if policy != "cluster" or _node is None:
        return
    if _node["database"] == "off" or _node["role"] == "control_plane":
        raise ValueError("expected one of: local, redis")
    if _node["database"] != "postgres":
        raise ValueError(f"policy 'cluster' keeps its counters in PostgreSQL; this node's database is {_node['database']}")


class NodePg:
    """One autocommit connection to the node's PostgreSQL per worker (per event loop), for plugin
    state kept in the database (cluster counters, oauth2's issued tokens). `SETUP` runs in one
    transaction on each new connection. A query that fails or outlasts `pg_timeout` raises, and
    its connection is closed rather than reused."""

    SETUP = ""

    def __init__(self) -> None:
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connection(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._conn is not None and self._loop is loop and not self._conn.closed:
            return self._conn
        if self._connecting is None or self._loop is not loop:
            self._connecting, self._loop, self._conn = asyncio.Lock(), loop, None
        async with self._connecting:
            if self._conn is None or self._conn.closed:
                self._conn = await _connect(self.SETUP)
        return self._conn

    async def run(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        """The statement's rows (none for a statement without a result)."""
        conn = await self._connection()
        try:
            async with asyncio.timeout(timeout()):
                cur = await conn.execute(sql, params)
                return await cur.fetchall() if cur.description else []
        except BaseException:
            await _close(conn)  # a broken or timed-out connection is not reused
            self._conn = None
            raise


def timeout() -> float:
    return _node["timeout"] if _node else 5.0


class ClusterCounters(NodePg):
    """Counters in PostgreSQL, shared by every node on that database."""

    SETUP = _CREATE

    def __init__(self) -> None:
        super().__init__()
        self._swept = 0.0

    async def _run(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        rows = await self.run(sql, params)
        now = time.monotonic()
        if now - self._swept >= SWEEP_EVERY:
            self._swept = now
            await self.run(_SWEEP, ())
        return rows

    async def usage(self, keys: Sequence[str]) -> list[int]:
        """The live count of each key (0 when none)."""
        found = dict(await self._run(_SELECT, (list(keys),)))
        return [int(found.get(k, 0)) for k in keys]

    async def add(self, keys: Sequence[str], amounts: Sequence[int], expires: Sequence[int]) -> None:
        """Count `amounts` for `keys`; a new row lives until its `expires` (unix seconds)."""
        await self._run(_UPSERT, (list(keys), [int(a) for a in amounts], [int(e) for e in expires]))

    async def take(self, keys: Sequence[str], limits: Sequence[float], expires: Sequence[int]) -> list[int]:
        """The counts before this request; this request is counted when every count is under its limit."""
        usage = await self.usage(keys)
        if all(n < limit for n, limit in zip(usage, limits)):
            await self.add(keys, [1] * len(keys), expires)
        return usage


async def _connect(setup: str) -> Any:
    import psycopg

    if _node is None:
        raise RuntimeError("this needs a node with a PostgreSQL database")
    conn = await psycopg.AsyncConnection.connect(**_node["conninfo"], autocommit=True,
                                                 connect_timeout=max(1, int(_node["timeout"])))
    try:
        async with conn.transaction():
            for statement in filter(str.strip, setup.split(";")):
                await conn.execute(statement)
    except BaseException:
        await _close(conn)
        raise
    return conn


async def _close(conn: Any) -> None:
    try:
        await conn.close()
    except Exception:  # already broken: nothing more to do
        pass


_shared: ClusterCounters | None = None


def cluster_counters() -> ClusterCounters:
    """This process's counters (one connection per worker, whatever the number of plugins)."""
    global _shared
    if _shared is None:
        _shared = ClusterCounters()
    return _shared
