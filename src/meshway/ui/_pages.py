"""Gateway pages, as Kong Manager's: overview, and per entity a list (search, tags, pages) and a
detail page with what hangs off it (a service's routes, an upstream's targets and their health)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from meshway.ui import _edit
from meshway.ui._entities import KINDS, Kind, label

PAGE_SIZE = 50
SCAN_SIZE = 1000  # a search reads the collection in pages this big...
SCAN_PAGES = 20  # ...and at most this many (20,000 entities), then says the search stopped


def overview(gui: Any):
    async def page(request: Request) -> Response:
        token = gui.token(request)
        info = await gui.admin.get("/", token)
        if not info.ok:
            return gui.failure(request, info)
        counts = {}
        for kind in KINDS.values():
            answer = await gui.admin.get(f"/{kind.path}", token, size=1000)
            counts[kind.path] = (len(answer.body.get("data", [])), bool(answer.body.get("next"))) if answer.ok else None
        return gui.render(request, "overview.html", title="Overview", info=info.body, counts=counts)

    return page


def routes(gui: Any) -> list[Route]:
    out = []
    for path, kind in KINDS.items():
        out += [
            Route(f"/{path}", _listing(gui, kind), methods=["GET"]),
            *_edit.routes(gui, kind),
            Route(f"/{path}/{{key}}", _detail(gui, kind), methods=["GET"]),
            Route(f"/{path}/{{key}}/delete", _delete(gui, kind), methods=["POST"]),
        ]
    return out


def _listing(gui: Any, kind: Kind):
    async def page(request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        tags = request.query_params.get("tags", "").strip()
        token = gui.token(request)
        if q:
            answer, rows, stopped = await _search(gui, kind, token, q, tags)
            nxt = None
        else:
            answer = await gui.admin.get(f"/{kind.path}", token, size=PAGE_SIZE, tags=tags,
                                         offset=request.query_params.get("offset"))
            rows, stopped = answer.body.get("data", []) if answer.ok else [], False
            nxt = answer.body.get("offset") if answer.ok and answer.body.get("next") else None
        if not answer.ok:
            return gui.failure(request, answer)
        return gui.render(request, "list.html", title=kind.title, kind=kind, rows=rows, q=q, tags=tags,
                          next_offset=nxt, stopped=stopped, label=label)

    return page


async def _search(gui: Any, kind: Kind, token: str | None, q: str, tags: str):
    """Rows whose id, name or shown columns contain `q` (case-insensitive), first PAGE_SIZE."""
    needle, found, offset = q.lower(), [], None
    for _ in range(SCAN_PAGES):
        answer = await gui.admin.get(f"/{kind.path}", token, size=SCAN_SIZE, tags=tags, offset=offset)
        if not answer.ok:
            return answer, [], False
        for row in answer.body.get("data", []):
            text = " ".join(str(row.get(c, "")) for c in ("id", "name", "username", *kind.columns)).lower()
            if needle in text:
                found.append(row)
                if len(found) >= PAGE_SIZE:
                    return answer, found, True
        offset = answer.body.get("offset")
        if not answer.body.get("next"):
            return answer, found, False
    return answer, found, True


def _detail(gui: Any, kind: Kind):
    async def page(request: Request) -> Response:
        key, token = request.path_params["key"], gui.token(request)
        answer = await gui.admin.get(f"/{kind.path}/{key}", token)
        if not answer.ok:
            return gui.failure(request, answer)
        entity = answer.body
        related = []
        for title, sub in kind.related:
            listed = await gui.admin.get(f"/{kind.path}/{entity['id']}/{sub}", token, size=PAGE_SIZE)
            related.append((title, sub, listed.body.get("data", []) if listed.ok else []))
        health = None
        if kind.path == "upstreams":
            found = await gui.admin.get(f"/upstreams/{entity['id']}/health", token)
            health = {t.get("target"): t.get("health") for t in found.body.get("data", [])} if found.ok else {}
        return gui.render(request, "detail.html", title=f"{kind.singular.capitalize()} {label(entity)}", kind=kind,
                          entity=entity, related=related, health=health, label=label,
                          error=request.query_params.get("error", ""))

    return page


def _delete(gui: Any, kind: Kind):
    async def action(request: Request) -> Response:
        key = request.path_params["key"]
        answer = await gui.admin.call("DELETE", f"/{kind.path}/{key}", gui.token(request))
        if answer.status == 401:
            return gui.login_redirect(request)
        if not answer.ok:
            message = answer.body.get("message", "delete failed") if isinstance(answer.body, dict) else "delete failed"
            return gui.render(request, "error.html", status=answer.status, message=message, status_code=answer.status)
        return RedirectResponse(f"{gui.base}/{kind.path}", status_code=303)

    return action
