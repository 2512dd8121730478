"""The Admin API app: generated entity routes, node endpoints, Kong's headers and error bodies."""
from __future__ import annotations

import logging
import time
from typing import Any, Iterable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import meshway
from meshway.admin._auth import AdminAccess, AdminGuard, cors_headers, store_token_check
from meshway.admin._config import config_routes
from meshway.admin._consumer_groups import consumer_group_routes
from meshway.admin._context import AdminContext
from meshway.admin._crud import entity_routes
from meshway.admin._http import JSONResponse, error_response
from meshway.admin._info import info_routes
from meshway.admin._tags import tag_routes
from meshway.mesh._api import mesh_routes  # Kuma's /meshes, /dataplanes, /tokens on the same app
from meshway.zones._api import config_entry_routes  # Consul's /v1/config, and /zones
from meshway.model import EntityError
from meshway.store import StoreError

log = logging.getLogger("meshway.admin")
SERVER = f"meshway/{meshway.__version__}"


class KongHeaders:
    """Adds Server, X-Meshway-Admin-Latency and, for an allowed dashboard origin, CORS headers."""

    def __init__(self, app: ASGIApp, access: AdminAccess) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope["path"]) > 1 and scope["path"].endswith("/"):
            # Kong answers `/services/` as `/services`; a redirect would lose curl's POST body.
            scope = {**scope, "path": scope["path"].rstrip("/") or "/"}
        started = time.monotonic()
        cors = cors_headers(self.access, dict(scope.get("headers", [])).get(b"origin"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                latency = str(int((time.monotonic() - started) * 1000))
                headers = list(message.get("headers", []))
                headers += [(b"server", SERVER.encode()), (b"x-meshway-admin-latency", latency.encode()), *cors]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _entity_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EntityError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "Not found", 405: "Method not allowed"}
    return JSONResponse({"message": messages.get(exc.status_code, exc.detail)}, status_code=exc.status_code)


async def _store_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"message": f"database error: {exc}"}, status_code=500)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("admin API %s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"message": "An unexpected error occurred"}, status_code=500)


def create_admin_app(*, settings: Any, store: Any = None, dbless: Any = None, node_info: dict | None = None,
                     extra_routes: Iterable[BaseRoute] = (), inner_middleware: Iterable[Middleware] = ()) -> Starlette:
    """The Kong-compatible Admin API; `store=None` means DB-less, reads served from `dbless.snapshot`.

    `inner_middleware` runs inside KongHeaders, so X-Meshway-Admin-Latency covers it (the node's
    wait for its workers after a write), as X-Kong-Admin-Latency covers Kong's whole request."""
    if store is None and dbless is None:
        raise ValueError("create_admin_app needs a store, or a dbless object in DB-less mode")
    ctx = AdminContext(settings=settings, store=store, dbless=dbless, node_info=dict(node_info or {}))
    routes = [*extra_routes, *mesh_routes(ctx), *config_entry_routes(ctx), *info_routes(ctx), *config_routes(ctx),
              *tag_routes(ctx), *consumer_group_routes(ctx),
              *entity_routes(ctx)]
    access = AdminAccess.from_settings(settings)
    check_token = store_token_check(store) if store is not None else None
    middleware = [Middleware(KongHeaders, access=access), *inner_middleware,
                  Middleware(AdminGuard, access=access, check_token=check_token)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={
        EntityError: _entity_error, HTTPException: _http_error, StoreError: _store_error, Exception: _unexpected})
    app.state.admin = ctx
    return app
