"""The dashboard's own door: the Admin API's Host rule, and no cross-site form posts.

1. Host (DNS rebinding): the Admin API's rule (`meshway.admin._auth`), with the names of
   `admin_gui_listen` in place of `admin_listen`'s; else 421.
2. Origin: a browser sends `Origin` with every POST. A POST whose Origin is not this page's own
   (scheme and Host of the request) is refused with 403 before it runs, so another site cannot
   make a logged-in browser edit the gateway with a hidden form. The token cookie is also
   `SameSite=Strict`. Tools without `Origin` (curl) are unaffected, as on the Admin API.
3. Credentials are the Admin API's: the dashboard forwards the token of its cookie and shows the
   login page when the Admin API answers 401.
"""
from __future__ import annotations

from typing import Any

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from meshway.admin._auth import LOOPBACK_NAMES, AdminAccess
from meshway.settings import effective_listeners, normalize_origin


def gui_access(settings: Any) -> AdminAccess:
    bound = {spec.host.strip("[]").lower() for spec in effective_listeners(settings, "admin_gui_listen")}
    bound -= {"0.0.0.0", "::"}
    return AdminAccess(names=LOOPBACK_NAMES | bound | {n.strip("[]") for n in settings.admin_server_names},
                       token_auth=settings.admin_auth == "token", cert_auth=bool(settings.admin_ssl_client_ca))


class GuiGuard:
    """ASGI middleware applying rules 1 and 2 before any page runs."""

    def __init__(self, app: ASGIApp, access: AdminAccess) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            why = self._refusal(scope)
            if why is not None:
                await PlainTextResponse(why[1], status_code=why[0])(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get(b"host")
        local = (scope.get("server") or (None,))[0]
        why = self.access.host_refusal(host, local, scope["scheme"])
        if why:
            return 421, why.replace("Admin API", "dashboard")
        origin = headers.get(b"origin")
        if scope["method"] not in ("GET", "HEAD") and origin is not None:
            own = normalize_origin(f"{scope['scheme']}://{host or ''}")
            if own is None or normalize_origin(origin) != own:
                return 403, f"Origin {origin!r} may not post to this dashboard"
        return None
