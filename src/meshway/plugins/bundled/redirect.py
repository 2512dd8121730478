"""redirect: answers every request with `status_code` and a Location header, body `redirecting`.

With `keep_incoming_path`, the Location is `location` with its path and query replaced by the
request's (its scheme, host, port and fragment kept), as Kong does with ada's URL setters.
"""
from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext


class RedirectConfig(PluginConfig):
    """Kong's redirect schema."""

    status_code: int = Field(default=301, ge=100, le=599)
    location: str
    keep_incoming_path: bool = False

    @field_validator("location")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if not parts.scheme:
            raise ValueError("missing scheme in url")
        if not parts.netloc:
            raise ValueError("missing host in url")
        return value


class Redirect(Plugin):
    """Redirects the client; the upstream is never called."""

    name = "redirect"
    priority = 779
    Config = RedirectConfig

    def __init__(self, config: RedirectConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.location = urlsplit(config.location)
        self.headers = {"Location": config.location}

    def access(self, ctx: RequestContext) -> None:
        headers = self.headers
        if self.config.keep_incoming_path:
            url = self.location
            headers = {"Location": urlunsplit((url.scheme, url.netloc, ctx.path or "/", ctx.query, url.fragment))}
        ctx.exit(self.config.status_code, b"redirecting", headers)


PLUGIN = Redirect
