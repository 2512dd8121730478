"""A consumer's credentials (key-auth, basic-auth, jwt, acls), added from the consumer's page as
in Kong Manager: the form comes from the credential's schema (`GET /schemas/<credential>`), the
write goes to the Admin API's nested collection, its refusals are shown on their fields."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from meshway.ui._entities import CREDENTIALS
from meshway.ui._forms import answer_errors, body_from_form, entity_fields

KINDS = {sub: title for title, sub in CREDENTIALS}
SKIP = ("id", "created_at", "updated_at", "consumer")  # a key-auth `key` is auto but may be given


def routes(gui: Any) -> list[Route]:
    return [Route("/consumers/{key}/{credential}/new", _form(gui), methods=["GET", "POST"])]


def _form(gui: Any):
    async def page(request: Request) -> Response:
        key, credential, token = request.path_params["key"], request.path_params["credential"], gui.token(request)
        if credential not in KINDS:
            return gui.render(request, "error.html", status=404, message="Not found", status_code=404)
        consumer = await gui.admin.get(f"/consumers/{key}", token)
        schema = await gui.admin.get(f"/schemas/{credential}", token)
        for answer in (consumer, schema):
            if not answer.ok:
                return gui.failure(request, answer)
        fields = _fields(schema.body)
        values, errors, message = {f.name: "" for f in fields}, {}, ""
        if request.method == "POST":
            form = await request.form()
            values = {f.name: str(form.get(f.name, "")) for f in fields}
            body, errors = body_from_form(fields, form)
            if not errors:
                answer = await gui.admin.call("POST", f"/consumers/{consumer.body['id']}/{credential}", token, body)
                if answer.ok:
                    return RedirectResponse(f"{gui.base}/consumers/{consumer.body['id']}", status_code=303)
                if answer.status not in (400, 409) or not isinstance(answer.body, dict):
                    return gui.failure(request, answer)
                errors, message = answer_errors(answer.body)
        return gui.render(request, "credential_form.html", title=f"New {credential} credential for "
                          f"{consumer.body.get('username') or consumer.body['id']}", fields=fields, values=values,
                          errors=errors, message=message, consumer=consumer.body,
                          loose={k: v for k, v in errors.items() if k not in {f.name for f in fields}})

    return page


def _fields(schema: dict) -> list:
    fields = schema.get("fields", [])
    unlocked = [{name: {k: v for k, v in spec.items() if k != "auto"}} for item in fields for name, spec in item.items()]
    return entity_fields({"fields": unlocked}, SKIP)
