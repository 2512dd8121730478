"""The dashboard's Starlette app: pages, login, static files, mounted at admin_gui_path."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from meshway.settings import ListenSpec
from meshway.ui._client import TOKEN_COOKIE, AdminClient
from meshway.ui._entities import KINDS
from meshway.ui._guard import GuiGuard, gui_access

HERE = Path(__file__).parent


class Gui:
    """What every page needs: the Admin API client, templates and the base path."""

    def __init__(self, settings: Any, admin_app: Any, config_hash: Callable[[], str | None]) -> None:
        self.settings = settings
        self.config_hash = config_hash  # what this node serves and pushes: a data plane's hash is compared to it
        self.admin = AdminClient(admin_app)
        self.base = "" if settings.admin_gui_path == "/" else settings.admin_gui_path
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals.update(base=self.base, kinds=KINDS, role=settings.role,
                                          token_auth=settings.admin_auth == "token")

    def token(self, request: Request) -> str | None:
        return request.cookies.get(TOKEN_COOKIE)

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    def login_redirect(self, request: Request) -> Response:
        """The Admin API said 401: the token is missing, wrong or revoked."""
        return RedirectResponse(f"{self.base}/login?next={request.url.path}", status_code=303)

    def failure(self, request: Request, answer: Any) -> Response:
        """An Admin API answer that is neither success nor a form's field error."""
        if answer.status == 401:
            return self.login_redirect(request)
        message = answer.body.get("message") if isinstance(answer.body, dict) else str(answer.body)
        return self.render(request, "error.html", status=answer.status, message=message or "error",
                           status_code=answer.status)


def create_gui_app(*, settings: Any, admin_app: Any, config_hash: Callable[[], str | None] = lambda: None) -> Starlette:
    from meshway.ui import _credentials, _login, _mesh, _pages, _traffic

    gui = Gui(settings, admin_app, config_hash)
    routes = [
        Route("/", _pages.overview(gui), methods=["GET"]),
        *_login.routes(gui),
        *_mesh.routes(gui),
        *_traffic.routes(gui),
        *_credentials.routes(gui),
        *_pages.routes(gui),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    if gui.base:
        home = RedirectResponse(gui.base + "/", status_code=302)
        routes = [Route("/", lambda request: home, methods=["GET"]),
                  Route(gui.base, lambda request: home, methods=["GET"]), Mount(gui.base, routes=routes)]
    return Starlette(routes=routes, middleware=[Middleware(GuiGuard, access=gui_access(settings))])


def gui_urls(settings: Any, specs: list[ListenSpec]) -> list[str]:
    """The dashboard's URLs, as a user types them (a wildcard address shown as localhost)."""
    path = settings.admin_gui_path.rstrip("/") + "/"
    out = []
    for spec in specs:
        host = spec.family_host
        host = "localhost" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
        out.append(f"{'https' if spec.ssl else 'http'}://{host}:{spec.port}{path}")
    return out
