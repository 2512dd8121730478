"""oauth2: Kong's OAuth 2.0 provider; the gateway issues tokens and checks them on every request.

Theory of operation (as Kong 3.x's oauth2 plugin):
- A request whose path ends in `/oauth2/token` (POST) or `/oauth2/authorize` (POST) is answered
  by the plugin itself (`_oauth2_grants`): client_credentials, password (with the
  `provision_key`), authorization_code (with PKCE) and refresh_token grants; the authorize
  endpoint gives a code or, for the implicit grant, a token in the redirect URI's fragment.
  Both need HTTPS (or `accept_http_if_already_terminated` and `X-Forwarded-Proto: https` from a
  client in `trusted_ips`).
- Any other request must carry a token: `Authorization: Bearer <token>` (the header named by
  `auth_header_name`), or an `access_token` query/body argument. The token must be of this
  service (or global, with `global_credentials`) and not expired; its credential's consumer is
  authenticated, and the upstream gets `X-Authenticated-Scope` and `X-Authenticated-UserId`.
- Tokens are looked up in the config (a DB-less node's or a data plane's `oauth2_tokens`) and in
  the node's database (`_oauth2_store`: a traditional node's tokens, cached briefly per worker).
- Parameters come from the query string and, for POST/PUT/PATCH, the body (form or JSON; the
  body wins), as Kong's: the plugin has the engine buffer request bodies.
"""
from __future__ import annotations

import time
from typing import Any, Literal, Mapping

from pydantic import Field, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.bundled import _body
from meshway.plugins.bundled._auth import AnonymousFallback, consumers_by_id
from meshway.plugins.bundled._oauth2_grants import Grants, bearer_challenge, parameters
from meshway.plugins.bundled._oauth2_store import issued_tokens

FLOWS = ("enable_authorization_code", "enable_implicit_grant", "enable_client_credentials", "enable_password_grant")
INVALID_TOKEN = "The access token is invalid or has expired"
AUTHENTICATED_HEADERS = ("X-Authenticated-Scope", "X-Authenticated-UserId")


def _provision_key() -> str:
    import uuid

    return uuid.uuid4().hex


class OAuth2Config(PluginConfig):
    """Kong's oauth2 schema."""

    scopes: list[str] | None = None
    mandatory_scope: bool = False
    provision_key: str = Field(default_factory=_provision_key, min_length=1)
    token_expiration: float = 7200
    enable_authorization_code: bool = False
    enable_implicit_grant: bool = False
    enable_client_credentials: bool = False
    enable_password_grant: bool = False
    hide_credentials: bool = False
    accept_http_if_already_terminated: bool = False
    anonymous: str | None = None
    global_credentials: bool = False
    auth_header_name: str = "authorization"
    refresh_token_ttl: int = Field(default=1209600, ge=0, le=100000000)
    reuse_refresh_token: bool = False
    pkce: Literal["none", "lax", "strict"] | None = "lax"
    realm: str | None = None

    @model_validator(mode="after")
    def _one_flow_and_scopes(self) -> "OAuth2Config":
        if not any(getattr(self, flow) for flow in FLOWS):
            raise ValueError("at least one of these fields must be true: " + ", ".join(FLOWS))
        if self.mandatory_scope and not self.scopes:
            raise ValueError("scopes: required field missing (mandatory_scope is true)")
        return self


class OAuth2(Plugin):
    """Issues OAuth 2.0 tokens at `<route>/oauth2/token|authorize` and requires one on the route."""

    name = "oauth2"
    priority = 1400
    no_consumer = True
    buffers_request = True  # token parameters may be in the body, as in Kong
    Config = OAuth2Config

    def __init__(self, config: OAuth2Config, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        consumers = consumers_by_id(index)
        # client_id -> credential and credential id -> (credential, consumer): built once per config.
        self.clients: dict[str, Mapping[str, Any]] = {}
        self.credentials: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
        for cred in index.entities("oauth2_credentials"):
            consumer = consumers.get((cred.get("consumer") or {}).get("id") or "")
            if consumer is not None:
                self.clients[cred["client_id"]] = cred
                self.credentials[cred["id"]] = (cred, consumer)
        self.config_tokens = {t["access_token"]: t for t in index.entities("oauth2_tokens") if t.get("access_token")}
        self.anonymous = AnonymousFallback(self.name, index, config.anonymous)
        self.grants = Grants(config, self.clients, self.config_tokens, entity.get("id"))
        self.header = config.auth_header_name

    async def access(self, ctx: RequestContext) -> None:
        path = ctx.path.rstrip("/") if ctx.path.endswith("/") else ctx.path
        if path.endswith("/oauth2/token"):
            return await self.grants.endpoint(ctx, "token")
        if path.endswith("/oauth2/authorize"):
            return await self.grants.endpoint(ctx, "authorization")
        if self.anonymous.configured and ctx.credential is not None:
            for name in AUTHENTICATED_HEADERS:  # logical OR: another plugin authenticated
                ctx.remove_header(name)
            return
        failure = await self.authenticate(ctx)
        if failure is None:
            return
        if self.anonymous.configured:
            for name in AUTHENTICATED_HEADERS:
                ctx.remove_header(name)
        self.anonymous.fail(ctx, 401, failure[0], {"WWW-Authenticate": failure[1]})

    async def authenticate(self, ctx: RequestContext) -> tuple[dict, str] | None:
        """Attach the token's consumer; or the 401 body and WWW-Authenticate value."""
        access_token = self.access_token(ctx)
        realm = self.config.realm
        if not access_token:
            return ({"error": "invalid_request", "error_description": "The access token is missing"},
                    bearer_challenge(realm))
        invalid = ({"error": "invalid_token", "error_description": INVALID_TOKEN},
                   bearer_challenge(realm, "invalid_token", INVALID_TOKEN))
        token = self.config_tokens.get(access_token) or await issued_tokens().token(access_token)
        if token is None:
            return invalid
        token_service = (token.get("service") or {}).get("id")
        service_id = (ctx.service or {}).get("id")
        if not self.config.global_credentials:
            if not token_service:
                return ({"error": "invalid_token", "error_description": "The access token is global, but the current "
                         "plugin is configured without 'global_credentials'"}, invalid[1])
            if token_service != service_id:
                return invalid
        elif token_service and token_service != service_id:
            return invalid
        expires_in = token.get("expires_in") or 0
        if expires_in > 0 and time.time() - (token.get("created_at") or 0) > expires_in:
            return invalid
        found = self.credentials.get((token.get("credential") or {}).get("id") or "")
        if found is None:
            return invalid
        credential, consumer = found
        ctx.authenticate(consumer, credential, credential["client_id"])
        for name, value in zip(AUTHENTICATED_HEADERS, (token.get("scope"), token.get("authenticated_userid"))):
            if value:
                ctx.set_header(name, value)
            else:
                ctx.remove_header(name)
        return None

    def access_token(self, ctx: RequestContext) -> str | None:
        """Kong's parse_access_token: `Bearer <t>`/`Token <t>` (else the whole value), or `access_token`."""
        value = ctx.get_header(self.header)
        if value is not None:
            parts = value.split()
            in_header = len(parts) == 2 and parts[0].lower() in ("bearer", "token")
            if in_header:
                value = parts[1]
            if self.config.hide_credentials and in_header:
                ctx.remove_header(self.header)
            return value
        value = parameters(ctx).get("access_token")
        if not isinstance(value, str):
            return None
        if self.config.hide_credentials:
            _hide_argument(ctx)
        return value


def _hide_argument(ctx: RequestContext) -> None:
    """Remove `access_token` from the query string and a form body (Kong's hide_credentials)."""
    args = _body.decode_args(ctx.query)
    if "access_token" in args:
        del args["access_token"]
        ctx.set_query(_body.encode_args(args))
    content_type = ctx.get_header("content-type") or ""
    if ctx.method != "GET" and "application/x-www-form-urlencoded" in content_type:
        kind, fields = _body.decode_body(content_type, ctx.read_body())
        if kind == _body.FORM and fields and "access_token" in fields:
            del fields["access_token"]
            ctx.set_body(_body.encode_body(kind, fields))


PLUGIN = OAuth2
