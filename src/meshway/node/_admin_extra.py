"""Admin API routes that need the node itself: upstream health and metrics live in the workers."""
from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from meshway.node.master import Master


def extra_routes(master: "Master") -> list[Route]:
    from meshway.node._status import metrics_route
    from meshway.plugins.bundled._acme_api import acme_routes
    from meshway.plugins.bundled._proxy_cache_api import proxy_cache_routes

    routes = [
        metrics_route(master),
        Route("/upstreams/{upstream}/health", _health(master), methods=["GET"]),
        Route("/upstreams/{upstream}/targets/{target}/healthy", _set_health(master, True), methods=["PUT", "POST"]),
        Route("/upstreams/{upstream}/targets/{target}/unhealthy", _set_health(master, False), methods=["PUT", "POST"]),
        *proxy_cache_routes(lambda: master.snapshot, master.prefix / "shm"),
        *acme_routes(master),
    ]
    if master.cluster_server is not None:
        routes += list(master.cluster_server.admin_routes())
    else:
        from meshway.cluster import refusing_admin_routes

        routes += refusing_admin_routes()
    return routes


def _upstream(master: "Master", key: str) -> dict | None:
    for upstream in (master.snapshot or {}).get("upstreams", []):
        if key in (upstream["id"], upstream["name"]):
            return upstream
    return None


def _upstream_name(master: "Master", key: str) -> str | None:
    upstream = _upstream(master, key)
    return upstream["name"] if upstream else None


def _target(master: "Master", upstream: dict, key: str) -> str | None:
    """A target of that upstream by id or `host[:port]` (port 8000 when omitted, as stored), as Kong finds it."""
    for target in (master.snapshot or {}).get("targets", []):
        if (target.get("upstream") or {}).get("id") == upstream["id"] and key in (
                target["id"], target["target"], target["target"].removesuffix(":8000")):
            return target["target"]
    return None


def _health(master: "Master"):
    async def handler(request):
        name = _upstream_name(master, request.path_params["upstream"])
        if name is None:
            return JSONResponse({"message": "Not found"}, status_code=404)
        if not master.workers:
            return JSONResponse({"message": "this node runs no proxy workers"}, status_code=400)
        results = [r for r in await master.workers.call("upstream_health", {"upstream": name}) if isinstance(r, dict)]
        if not results:
            return JSONResponse({"message": "no worker answered"}, status_code=503)
        body = dict(results[0])
        body["node_id"] = master.node_id
        return JSONResponse(body)

    return handler


def _set_health(master: "Master", healthy: bool):
    async def handler(request):
        upstream = _upstream(master, request.path_params["upstream"])
        target = _target(master, upstream, request.path_params["target"]) if upstream else None
        if target is None:
            return JSONResponse({"message": "Not found"}, status_code=404)
        if master.workers:
            results = await master.workers.call("set_target_health", {"upstream": upstream["name"], "target": target,
                                                                      "healthy": healthy})
            if results and all(isinstance(r, BaseException) for r in results):
                return JSONResponse({"message": str(results[0])}, status_code=404)
        return Response(status_code=204)

    return handler
