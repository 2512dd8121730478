"""Who may drive the Admin API: the Host it was reached by, the page it was sent from, credentials.

Rules, checked in this order on every request (README "Security"):
1. Host (DNS rebinding). A page on `http://evil.example:8001` whose name is made to resolve to
   127.0.0.1 reaches a loopback Admin API as a same-origin page. So on a loopback connection, and
   on any connection that carries no credentials, `Host` must be one of the listener's names:
   `localhost`, `127.0.0.1`, `[::1]`, the address the connection arrived on, the bound
   addresses of `admin_listen`, and `admin_server_names`; with any port or none (an SSH tunnel
   changes the port, never the name). Otherwise 421. With credentials on a non-loopback
   connection any Host is accepted: whoever holds them may name the node as they like.
2. Origin (cross-site requests). CORS hides a response from a foreign page, but a form POST is
   sent without a preflight and would still write. Browsers put `Origin` on every cross-origin
   request and on every POST, so a request whose `Origin` is not in `admin_gui_origin` is
   refused (403) before it runs. Tools (curl, decK, CLIs) send no `Origin` and are unaffected.
3. Preflight. `OPTIONS` with `Access-Control-Request-Method` from an allowed origin gets the CORS
   answer (never `*`: the allowed origin itself, as Kong's `admin_gui_url` does); it needs no
   credentials, as browsers never send them on a preflight.
4. Credentials. With `admin_auth = token`, a request needs a valid token in `Kong-Admin-Token`
   (or `Meshway-Admin-Token`): else 401 with Kong's message. On an `ssl` listener with
   `admin_ssl_client_ca`, the TLS handshake already required a certificate signed by that CA,
   which authenticates the request on its own.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from meshway.admin._http import JSONResponse
from meshway.settings import effective_listeners, is_loopback_host, normalize_origin

TOKEN_HEADERS = (b"kong-admin-token", b"meshway-admin-token")
INVALID_CREDENTIALS = "Invalid credentials. Token or User credentials required"  # Kong's RBAC answer
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ALLOW_METHODS = "GET, HEAD, PUT, PATCH, POST, DELETE"

TokenCheck = Callable[[str], Awaitable[bool]]


@dataclasses.dataclass(frozen=True)
class AdminAccess:
    """The Admin API's access rules, compiled once from the settings."""

    gui_origins: frozenset[str] = frozenset()
    names: frozenset[str] = LOOPBACK_NAMES  # Host names (without port) always accepted
    token_auth: bool = False
    cert_auth: bool = False  # https connections presented a client certificate the CA signed

    @classmethod
    def from_settings(cls, settings: Any) -> "AdminAccess":
        bound = {spec.host.strip("[]").lower() for spec in effective_listeners(settings, "admin_listen")}
        bound -= {"0.0.0.0", "::"}  # a wildcard is not a name anyone sends
        return cls(gui_origins=frozenset(settings.admin_gui_origin),
                   names=LOOPBACK_NAMES | bound | {n.strip("[]") for n in settings.admin_server_names},
                   token_auth=settings.admin_auth == "token", cert_auth=bool(settings.admin_ssl_client_ca))

    def authenticated_by_connection(self, scheme: str) -> bool:
        return self.cert_auth and scheme == "https"

    def credentials_required(self, scheme: str) -> bool:
        return self.token_auth and not self.authenticated_by_connection(scheme)

    def host_refusal(self, host: str | None, local_addr: str | None, scheme: str) -> str | None:
        """Why this Host is refused (rule 1), or None."""
        credentials = self.token_auth or self.authenticated_by_connection(scheme)
        if host is None or (credentials and not _is_loopback(local_addr)):
            return None
        name = host_name(host)
        if name is not None and (name in self.names or name == _own_address(local_addr)):
            return None
        return (f"Host {host!r} is not a name of this Admin API (DNS rebinding defence); "
                "add the name to admin_server_names to accept it")

    def origin_allowed(self, origin: str) -> bool:
        return normalize_origin(origin) in self.gui_origins


def host_name(host: str) -> str | None:
    """The name part of a Host header, lower case, without port or brackets; None if malformed."""
    host = host.strip().lower()
    if host.startswith("["):
        inside, sep, rest = host[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return inside
    name, sep, port = host.partition(":")
    if (sep and not port.isdigit()) or not name:
        return None
    return name.rstrip(".")


def _own_address(addr: str | None) -> str:
    """The address a connection arrived on, as a client writes it (IPv4 of a dual-stack socket unmapped)."""
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return (addr or "").lower()
    return str(getattr(ip, "ipv4_mapped", None) or ip)


def _is_loopback(addr: str | None) -> bool:
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return is_loopback_host(addr)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class AdminGuard:
    """ASGI middleware applying the rules above before any Admin API handler runs."""

    def __init__(self, app: ASGIApp, access: AdminAccess, check_token: TokenCheck | None) -> None:
        self.app, self.access, self.check_token = app, access, check_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = await self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await _preflight(headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> JSONResponse | None:
        local = (scope.get("server") or (None,))[0]
        host = headers.get(b"host")
        why = self.access.host_refusal(host.decode("latin-1") if host is not None else None, local, scope["scheme"])
        if why:
            return JSONResponse({"message": why}, status_code=421)
        origin = headers.get(b"origin")
        if origin is not None and not self.access.origin_allowed(origin.decode("latin-1")):
            return JSONResponse({"message": f"Origin {origin.decode('latin-1')!r} is not allowed to use the Admin API; "
                                            "list the dashboard's origin in admin_gui_origin"}, status_code=403)
        if _is_preflight(scope, headers) or not self.access.credentials_required(scope["scheme"]):
            return None
        token = next((headers[h] for h in TOKEN_HEADERS if h in headers), None)
        if token is None or self.check_token is None or not await self.check_token(token.decode("latin-1")):
            return JSONResponse({"message": INVALID_CREDENTIALS}, status_code=401)
        return None


def store_token_check(store: Any) -> TokenCheck:
    """Tokens looked up in the store on every request, so a revocation holds at once."""

    async def check(token: str) -> bool:
        return await run_in_threadpool(store.admin_tokens.verify, token) is not None

    return check


def cors_headers(access: AdminAccess, origin: bytes | None) -> list[tuple[bytes, bytes]]:
    """CORS headers of an answer to an allowed origin (the guard refused every other origin)."""
    if origin is None or not access.origin_allowed(origin.decode("latin-1")):
        return []
    return [(b"access-control-allow-origin", origin), (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin")]


def _is_preflight(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    return scope["method"] == "OPTIONS" and b"origin" in headers and b"access-control-request-method" in headers


def _preflight(headers: dict[bytes, bytes]) -> Response:
    """OPTIONS: 204 with the methods; the CORS headers proper are added with every answer's."""
    answer = {"Allow": ALLOW_METHODS + ", OPTIONS"}
    if b"origin" in headers:
        answer["Access-Control-Allow-Methods"] = ALLOW_METHODS
        requested = headers.get(b"access-control-request-headers")
        if requested:
            answer["Access-Control-Allow-Headers"] = requested.decode("latin-1")
        answer["Access-Control-Max-Age"] = "600"
    return Response(status_code=204, headers=answer)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        name = name.lower()
        if name == b"host" and name in headers:
            value = b"\x00"  # two Host headers: which one a browser meant is unknowable, refuse both
        headers[name] = value
    return headers
