"""request-termination: answers every request (or those carrying a trigger) with a fixed response."""
from __future__ import annotations

from http import HTTPStatus
from typing import Any, Mapping

from pydantic import Field, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.bundled import _body

# Kong's default error messages (kong.response.error) for the usual statuses.
DEFAULT_MESSAGES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 406: "Not acceptable", 409: "Conflict", 413: "Request body too large",
    415: "Unsupported media type", 429: "API rate limit exceeded", 500: "An unexpected error occurred",
    502: "Bad Gateway", 503: "Service unavailable", 504: "Gateway timeout",
}


class RequestTerminationConfig(PluginConfig):
    """Kong's request-termination schema."""

    status_code: int = Field(default=503, ge=100, le=599)
    message: str | None = None
    body: str | None = None
    content_type: str | None = None
    trigger: str | None = None
    echo: bool = False

    @model_validator(mode="after")
    def _check(self) -> "RequestTerminationConfig":
        if self.message is not None and self.body is not None:
            raise ValueError("message cannot be used with body")
        if self.content_type is not None and self.body is None:
            raise ValueError("content_type requires a body")
        return self


class RequestTermination(Plugin):
    """Terminates requests with a configured status and body, or echoes them back."""

    name = "request-termination"
    priority = 2
    Config = RequestTerminationConfig

    def __init__(self, config: RequestTerminationConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        status = config.status_code
        if config.body is not None:
            self.answer = (config.body.encode(), {"Content-Type": config.content_type or "application/json; charset=utf-8"})
        else:
            self.answer = ({"message": config.message or _default_message(status)}, None)
        self.trigger = config.trigger.lower() if config.trigger else None

    def access(self, ctx: RequestContext) -> None:
        if self.trigger is not None and not self.triggered(ctx):
            return
        if self.config.echo:
            return ctx.exit(self.config.status_code, self.echo(ctx))
        ctx.exit(self.config.status_code, *self.answer)

    def triggered(self, ctx: RequestContext) -> bool:
        """True when the trigger is a request header or a query argument."""
        if ctx.get_header(self.trigger) is not None:
            return True
        return bool(ctx.query) and self.trigger in {k.lower() for k in _body.decode_args(ctx.query)}

    def echo(self, ctx: RequestContext) -> dict[str, Any]:
        """The request as the gateway saw it, as Kong's echo (without the node id)."""
        headers: dict[str, Any] = {}
        for name, value in ctx.get_headers():
            key = name.lower()
            headers[key] = [*headers[key], value] if isinstance(headers.get(key), list) else \
                ([headers[key], value] if key in headers else value)
        args = {k: v[0] if len(v) == 1 else v for k, v in _body.decode_args(ctx.query).items()}
        body = ctx.read_body()
        request = {"scheme": ctx.scheme, "host": ctx.host, "method": ctx.method, "path": ctx.path,
                   "headers": headers, "query": args, "raw_body": body.decode("utf-8", "replace") if body else None}
        echo: dict[str, Any] = {"request": request, "matched_route": ctx.route, "matched_service": ctx.service}
        if self.config.message is not None:
            echo["message"] = self.config.message
        return echo


def _default_message(status: int) -> str:
    if status in DEFAULT_MESSAGES:
        return DEFAULT_MESSAGES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"The upstream server responded with {status}"


PLUGIN = RequestTermination
