"""proxy-cache's Admin API endpoints (Kong's api.lua), served by the node whose workers share the cache.

- `DELETE /proxy-cache`: empties the cache of every proxy-cache plugin (204).
- `GET|DELETE /proxy-cache/{cache_key}`: the entry under that key in any proxy-cache plugin's
  store (200 with Kong's cached object / 204), else 404.
- `GET|DELETE /proxy-cache/{plugin_id}/caches/{cache_key}`: the same within one plugin's store;
  404 when the plugin or the entry is not there.

The node's workers and its Admin API open the same store (`<prefix>/shm/cache/`), so a purge here
is seen by every worker at once. In hybrid mode each data plane has its own cache, which the control
plane's Admin API does not reach (Kong's purge broadcast does not reach data planes either).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshway.plugins.bundled._cache_store import CacheStore, cache_store


def proxy_cache_routes(snapshot: Callable[[], dict | None], shm_dir: Path) -> list[Route]:
    def stores(plugin_id: str | None = None) -> list[CacheStore] | None:
        from meshway.plugins.bundled.proxy_cache import DICTIONARIES

        found, names = [], set()
        for plugin in (snapshot() or {}).get("plugins") or ():
            if plugin.get("name") != "proxy-cache" or (plugin_id is not None and plugin.get("id") != plugin_id):
                continue
            name = ((plugin.get("config") or {}).get("memory") or {}).get("dictionary_name") or "kong_db_cache"
            if name in DICTIONARIES and name not in names:
                names.add(name)
                found.append(cache_store(shm_dir, name, DICTIONARIES[name]))
        if plugin_id is not None and not found:
            return None
        return found

    async def flush_all(request: Request) -> Response:
        for store in stores() or ():
            store.flush()
        return Response(status_code=204)

    def entry(request: Request, plugin_id: str | None) -> Response:
        key = request.path_params["cache_key"]
        found = stores(plugin_id)
        if found is None:
            return JSONResponse({"message": "Not found"}, status_code=404)
        for store in found:
            got = store.fetch(key, time.time())
            if got is None:
                continue
            if request.method == "DELETE":
                store.purge(key)
                return Response(status_code=204)
            return JSONResponse(_shown(*got))
        return JSONResponse({"message": "Not found"}, status_code=404)

    async def by_key(request: Request) -> Response:
        return entry(request, None)

    async def by_plugin(request: Request) -> Response:
        return entry(request, request.path_params["plugin_id"])

    return [
        Route("/proxy-cache", flush_all, methods=["DELETE"]),
        Route("/proxy-cache/{cache_key}", by_key, methods=["GET", "DELETE"]),
        Route("/proxy-cache/{plugin_id}/caches/{cache_key}", by_plugin, methods=["GET", "DELETE"]),
    ]


def _shown(meta: dict[str, Any], body: bytes) -> dict[str, Any]:
    """Kong's cached object: status, headers, body, body_len, timestamp, ttl, version, req_body."""
    headers = {name: values[0] if len(values) == 1 else values for name, values in meta["headers"].items()}
    return {**meta, "headers": headers, "body": body.decode("utf-8", "replace")}
