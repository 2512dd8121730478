"""Create and edit forms of the gateway pages. The Admin API judges every write: its answer's
field errors are shown on the inputs they name, and the entered values stay in the form."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from meshway.ui._entities import Kind, label
from meshway.ui._forms import (Field, answer_errors, body_from_form, entity_fields, flat_errors, lookup,
                              plugin_config_fields, shown)

NESTED = {"upstreams": "targets"}  # a detail page with its own add form (an upstream's targets)


def routes(gui: Any, kind: Kind) -> list[Route]:
    out = [Route(f"/{kind.path}/new", _form(gui, kind, editing=False), methods=["GET", "POST"]),
           Route(f"/{kind.path}/{{key}}/edit", _form(gui, kind, editing=True), methods=["GET", "POST"])]
    if kind.path in NESTED:
        out.append(Route(f"/{kind.path}/{{key}}/{NESTED[kind.path]}/new", _nested(gui, kind), methods=["POST"]))
    return out


async def _fields(gui: Any, kind: Kind, token: str | None, plugin: str | None):
    """(fields, answer of a failed schema read or None)."""
    schema = await gui.admin.get(f"/schemas/{kind.path}", token)
    if not schema.ok:
        return [], schema
    skip = {"name", "config"} if kind.path == "plugins" else set()
    fields = [*kind.extra, *entity_fields(schema.body, skip)]
    if plugin:
        config = await gui.admin.get(f"/schemas/plugins/{plugin}", token)
        if not config.ok:
            return [], config
        fields += plugin_config_fields(config.body)
    return fields, None


def _form(gui: Any, kind: Kind, editing: bool):
    async def page(request: Request) -> Response:
        token = gui.token(request)
        current = None
        if editing:
            found = await gui.admin.get(f"/{kind.path}/{request.path_params['key']}", token)
            if not found.ok:
                return gui.failure(request, found)
            current = found.body
        plugin = (current or {}).get("name") if kind.path == "plugins" and editing else request.query_params.get("name")
        if kind.path == "plugins" and not plugin:
            return await _plugin_chooser(gui, request, token)
        fields, failed = await _fields(gui, kind, token, plugin)
        if failed:
            return gui.failure(request, failed)
        if request.method == "GET":
            values = {f.name: shown(f, lookup(current, f.name)) for f in fields} if current else _prefill(request, fields)
            return _render(gui, request, kind, fields, values, {}, "", current, plugin)
        form = await request.form()
        body, errors = body_from_form(fields, form, current)
        values = {f.name: str(form.get(f.name, "")) for f in fields}
        if errors:
            return _render(gui, request, kind, fields, values, errors, "", current, plugin)
        return await _submit(gui, request, kind, fields, values, body, current, plugin)

    return page


async def _submit(gui, request, kind, fields, values, body, current, plugin) -> Response:
    token = gui.token(request)
    if current is not None and not body:
        return RedirectResponse(f"{gui.base}/{kind.path}/{current['id']}", status_code=303)  # nothing changed
    if plugin and current is None:
        body["name"] = plugin
    if current is None:
        answer = await gui.admin.call("POST", f"/{kind.path}", token, body)
    else:
        answer = await gui.admin.call("PATCH", f"/{kind.path}/{current['id']}", token, body)
    if answer.ok:
        return RedirectResponse(f"{gui.base}/{kind.path}/{answer.body['id']}", status_code=303)
    if answer.status in (400, 409) and isinstance(answer.body, dict):
        errors, message = answer_errors(answer.body)
        return _render(gui, request, kind, fields, values, errors, message, current, plugin)
    return gui.failure(request, answer)


def _prefill(request: Request, fields: list[Field]) -> dict[str, str]:
    """A new entity's inputs: blank, or what the link said (a service's "Add route" sets service)."""
    return {f.name: request.query_params.get(f.name, "") for f in fields}


def _render(gui, request, kind, fields, values, errors, message, current, plugin) -> Response:
    """The form, with the errors on their fields. 200 even when refused: the page itself loaded
    (browsers log a 4xx document as a console error), and the error is on the page."""
    names = {f.name for f in fields}
    order = {name: i for i, name in enumerate(kind.main)}  # Kong Manager's order: name first, then the rest
    main = sorted((f for f in fields if f.name in order or f.name.startswith("config.")),
                  key=lambda f: order.get(f.name, len(order)))
    advanced = [f for f in fields if f not in main]
    # an error on a field the form does not have (or none at all) is shown above the form
    loose = {k: v for k, v in errors.items() if k not in names}
    verb = "Edit" if current else "New"
    title = f"{verb} {kind.singular}" + (f" {label(current)}" if current else "") + (f" ({plugin})" if plugin else "")
    return gui.render(request, "form.html", title=title, kind=kind, main=main, advanced=advanced,
                      values=values, errors=errors, loose=loose, message=message, current=current, plugin=plugin)


async def _plugin_chooser(gui: Any, request: Request, token: str | None) -> Response:
    enabled = await gui.admin.get("/plugins/enabled", token)
    if not enabled.ok:
        return gui.failure(request, enabled)
    scope = {k: v for k, v in request.query_params.items() if k in ("service", "route", "consumer")}
    return gui.render(request, "plugin_choose.html", title="New plugin", names=enabled.body.get("enabled_plugins", []),
                      scope=scope)


def _nested(gui: Any, kind: Kind):
    """An upstream's "Add target" form: posted to the Admin API's nested collection."""
    sub = NESTED[kind.path]

    async def action(request: Request) -> Response:
        key, token = request.path_params["key"], gui.token(request)
        form = await request.form()
        body: dict[str, Any] = {"target": str(form.get("target", "")).strip()}
        weight = str(form.get("weight", "")).strip()
        if weight:
            body["weight"] = int(weight) if weight.isdigit() else weight
        answer = await gui.admin.call("POST", f"/{kind.path}/{key}/{sub}", token, body)
        if answer.status == 401:
            return gui.login_redirect(request)
        if answer.ok:
            return RedirectResponse(f"{gui.base}/{kind.path}/{key}", status_code=303)
        errors = flat_errors((answer.body or {}).get("fields") or {}) if isinstance(answer.body, dict) else {}
        text = "; ".join(f"{k}: {v}" for k, v in errors.items()) or str((answer.body or {}).get("message", ""))
        from urllib.parse import quote

        return RedirectResponse(f"{gui.base}/{kind.path}/{key}?error={quote(text)}", status_code=303)

    return action
