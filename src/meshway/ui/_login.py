"""Login with an Admin API token (admin_auth = token), kept in an HttpOnly, SameSite=Strict cookie.

Kong Manager asks for the RBAC token and sends it in `Kong-Admin-Token`; so does the dashboard,
from its server side: the browser's scripts never see the token.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from meshway.ui._client import TOKEN_COOKIE


def _safe_next(gui: Any, value: str | None) -> str:
    """Only a path of this dashboard: never another site (open redirect)."""
    if value and value.startswith((gui.base or "") + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return gui.base + "/"


def routes(gui: Any) -> list[Route]:
    async def login(request: Request) -> Response:
        nxt = _safe_next(gui, request.query_params.get("next"))
        if request.method == "GET":
            return gui.render(request, "login.html", next=nxt, error="")
        form = await request.form()
        token = str(form.get("token", "")).strip()
        nxt = _safe_next(gui, str(form.get("next", "")))
        answer = await gui.admin.get("/", token or None)
        if answer.status == 401 or not token:
            return gui.render(request, "login.html", next=nxt,
                              error=answer.body.get("message", "Invalid credentials") if token else "Enter a token")
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path=gui.base + "/",
                            secure=request.url.scheme == "https")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse(gui.base + "/login", status_code=303)
        response.delete_cookie(TOKEN_COOKIE, path=gui.base + "/")
        return response

    return [Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["POST"])]
