"""cors: answers CORS preflights in `access` and adds CORS headers to responses."""
from __future__ import annotations

import re
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext

METHODS = ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT")
# An origin entry with any other character is a regex (Kong's rule).
_PLAIN = re.compile(r"^[A-Za-z0-9.:/-]*$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
CACHE_SIZE = 10_000


class CorsConfig(PluginConfig):
    """Kong's cors schema."""

    origins: list[str] | None = None
    headers: list[str] | None = None
    exposed_headers: list[str] | None = None
    methods: list[Literal[METHODS]] = Field(default_factory=lambda: list(METHODS))  # type: ignore[valid-type]
    max_age: float | None = None
    credentials: bool = False
    private_network: bool = False
    preflight_continue: bool = False

    @field_validator("origins")
    @classmethod
    def _regexes_compile(cls, value: list[str] | None) -> list[str] | None:
        for origin in value or ():  # Kong's validate_asterisk_or_regex, and its message
            if origin != "*" and not _PLAIN.match(origin):
                try:
                    re.compile(origin)
                except re.error:
                    raise ValueError(f"'{origin}' is not a valid regex") from None
        return value


class Cors(Plugin):
    """Cross-origin resource sharing, as Kong's cors plugin."""

    name = "cors"
    priority = 2000
    no_consumer = True
    Config = CorsConfig

    def __init__(self, config: CorsConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        origins = config.origins or []
        self.allow_all = not origins or origins == ["*"]
        self.plain = {_normalize(o) for o in origins if _PLAIN.match(o)}
        self.patterns = [re.compile(o) for o in origins if not _PLAIN.match(o) and o != "*"]
        self.allowed: dict[str, bool] = {}
        self.methods = ",".join(config.methods or METHODS)
        self.allow_headers = ",".join(config.headers) if config.headers else None
        self.expose = ",".join(config.exposed_headers) if config.exposed_headers else None
        self.shared_key = f"cors-skip:{entity.get('id')}"

    def access(self, ctx: RequestContext) -> None:
        if ctx.method != "OPTIONS" or not ctx.get_header("origin") or not ctx.get_header("access-control-request-method"):
            return
        if self.config.preflight_continue:
            ctx.shared[self.shared_key] = True  # the upstream answers the preflight, headers and all
            return
        headers = self.origin_headers(ctx)
        allow_headers = self.allow_headers or ctx.get_header("access-control-request-headers")
        if allow_headers:
            headers["Access-Control-Allow-Headers"] = allow_headers
        headers["Access-Control-Allow-Methods"] = self.methods
        if self.config.max_age is not None:
            headers["Access-Control-Max-Age"] = _num(self.config.max_age)
        if self.config.private_network and ctx.get_header("access-control-request-private-network") == "true":
            headers["Access-Control-Allow-Private-Network"] = "true"
        ctx.exit(200, None, headers)

    def response(self, ctx: RequestContext) -> None:
        if ctx.shared.get(self.shared_key):
            return
        headers = self.origin_headers(ctx)
        if "Access-Control-Allow-Origin" not in headers:
            ctx.remove_response_header("Access-Control-Allow-Origin")
        if self.expose:
            headers["Access-Control-Expose-Headers"] = self.expose
        for name, value in headers.items():
            if name == "Vary":
                _add_vary(ctx, value)
            else:
                ctx.set_response_header(name, value)

    def origin_headers(self, ctx: RequestContext) -> dict[str, str]:
        """Allow-Origin, Allow-Credentials and Vary for this request's Origin."""
        origin = ctx.get_header("origin")
        if self.allow_all:
            if self.config.credentials and origin:  # '*' is not allowed with credentials
                return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
            return {"Access-Control-Allow-Origin": "*"}
        headers = {"Vary": "Origin"}
        if origin and self.is_allowed(origin):
            headers["Access-Control-Allow-Origin"] = origin
        if self.config.credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    def is_allowed(self, origin: str) -> bool:
        ok = self.allowed.get(origin)
        if ok is None:
            # Kong anchors regex origins at both ends.
            ok = _normalize(origin) in self.plain or any(p.fullmatch(origin) for p in self.patterns)
            if len(self.allowed) >= CACHE_SIZE:
                self.allowed.clear()
            self.allowed[origin] = ok
        return ok


def _normalize(origin: str) -> str:
    """scheme://host:port with the scheme's default port, lower case (Kong's normalize_origin)."""
    parts = urlsplit(origin.lower() if "://" in origin else f"http://{origin.lower()}")
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)
    except ValueError:
        return origin.lower()
    return f"{parts.scheme}://{parts.hostname or ''}:{port}"


def _add_vary(ctx: RequestContext, value: str) -> None:
    current = ctx.get_response_header("vary")
    if not current:
        ctx.set_response_header("Vary", value)
    elif value.lower() not in (v.strip().lower() for v in current.split(",")):
        ctx.set_response_header("Vary", f"{current}, {value}")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


PLUGIN = Cors
