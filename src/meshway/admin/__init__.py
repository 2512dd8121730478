"""The Kong-compatible Admin API, a Starlette app the node mounts on its admin listeners.

    create_admin_app(*, settings, store, dbless=None, node_info, extra_routes=()) -> Starlette

- `store`: a `meshway.store.Store`, or None in DB-less mode.
- `dbless` (DB-less only): an object with `.snapshot` (the live normalized snapshot; reads are
  served from it), optional `.hash`, and `async apply(snapshot)` (swap; raise to refuse it).
  Entity writes then answer 405; `POST /config` calls `apply`.
- `node_info`: merged into `GET /` (`node_id`, `hostname`, `configuration`, `role`...); an
  optional `"status"` callable returns the `server` counters of `GET /status`.
- `extra_routes`: Starlette routes matched before the generated ones (health, targets...).

Every response carries `Server: meshway/<version>` and `X-Meshway-Admin-Latency`; run uvicorn
with `server_header=False` so `Server` is ours. Access rules (Host, Origin, tokens, client
certificates) come from the settings: see `_auth.py`.
"""
from meshway.admin._app import create_admin_app

__all__ = ["create_admin_app"]
