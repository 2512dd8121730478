"""The status API (`status_listen`): readiness and, with the prometheus plugin, metrics."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshway.node._metrics import merge_worker_metrics

if TYPE_CHECKING:
    from meshway.node.master import Master


def create_status_app(master: "Master") -> Starlette:
    async def status(request):
        body = {
            "ready": master.config_hash is not None,
            "role": master.settings.role,
            "configuration_hash": master.config_hash,
            "uptime_seconds": round(time.time() - master.started_at, 1),
            "workers": len(master.workers.pids) if master.workers else 0,
        }
        if master.store is not None:
            body["database"] = {"reachable": await _db_reachable(master)}
        return JSONResponse(body)

    return Starlette(routes=[Route("/status", status), metrics_route(master)])


def metrics_route(master: "Master") -> Route:
    """`/metrics`: on the status API and, as Kong's prometheus plugin does, on the Admin API."""

    async def metrics(request):
        texts = await master.workers.call("metrics") if master.workers else []
        good = [t for t in texts if isinstance(t, str)]
        return Response(merge_worker_metrics(good) + await _node_metrics(master),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    return Route("/metrics", metrics, methods=["GET"])


async def _node_metrics(master: "Master") -> str:
    """Kong's node-wide families, once (workers' texts are summed): datastore, node, shared memory.
    DB-less and data-plane nodes count as reachable, as Kong's `off` strategy connects always."""
    from meshway import __version__
    from meshway.plugins.bundled._metrics_node import render_node_metrics

    reachable = await _db_reachable(master) if master.store is not None else True
    return render_node_metrics(master.node_id, __version__, reachable, Path(master.prefix) / "shm")


async def _db_reachable(master: "Master") -> bool:
    import asyncio

    try:
        await asyncio.to_thread(master.store.version)
        return True
    except Exception:
        return False
