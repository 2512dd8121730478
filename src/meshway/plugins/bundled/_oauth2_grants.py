"""oauth2's own endpoints on the proxy: `<route>/oauth2/token` and `<route>/oauth2/authorize`.

Kong's order of checks is kept, including its quirk that a later check's error replaces an
earlier one (an unsupported response_type with an unknown client is reported as invalid_client).
Answers are JSON with `Cache-Control: no-store` and `Pragma: no-cache`; errors are 400 (401 with
`WWW-Authenticate: Basic realm="OAuth2.0"` when bad client credentials came in a Basic header).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from meshway.plugins import RequestContext, verify_client_secret
from meshway.plugins.bundled import _body
import logging

from meshway.plugins.bundled._oauth2_store import NoDatabase, issued_tokens

NO_CACHE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
INVALID_CLIENT = {"error": "invalid_client", "error_description": "Invalid client authentication"}
BAD_REDIRECT = {"error": "invalid_request",
                "error_description": "Invalid redirect_uri that does not match with any redirect_uri created with the application"}
CODE_TTL = 300
UNEXPECTED = {"message": "An unexpected error occurred"}
log = logging.getLogger("meshway.plugins")


def bearer_challenge(realm: str | None, error: str | None = None, description: str | None = None) -> str:
    params = [f'{k}="{v}"' for k, v in (("realm", realm), ("error", error), ("error_description", description)) if v]
    return "Bearer " + ", ".join(params) if params else "Bearer"


def parameters(ctx: RequestContext) -> dict[str, Any]:
    """Query arguments merged with body arguments (POST/PUT/PATCH; the body wins), as Kong's.
    A repeated argument is a list, which no check accepts as a string."""
    merged: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k, v in _body.decode_args(ctx.query).items()}
    if ctx.method in ("POST", "PUT", "PATCH"):
        kind, fields = _body.decode_body(ctx.get_header("content-type"), ctx.read_body())
        if kind == _body.FORM and fields:
            merged.update({k: v[0] if len(v) == 1 else v for k, v in fields.items()})
        elif kind == _body.JSON and isinstance(fields, dict):
            merged.update(fields)
    return merged


def new_secret() -> str:
    return secrets.token_hex(16)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


class Grants:
    """The token and authorize endpoints of one oauth2 plugin instance."""

    def __init__(self, config: Any, clients: Mapping[str, Mapping[str, Any]],
                 config_tokens: Mapping[str, Mapping[str, Any]], plugin_id: str | None) -> None:
        self.config = config
        self.clients = clients
        self.config_tokens = config_tokens
        self.config_tokens_by_refresh = {t["refresh_token"]: t for t in config_tokens.values() if t.get("refresh_token")}
        self.plugin_id = plugin_id
        self.scopes = frozenset(config.scopes or ())

    async def endpoint(self, ctx: RequestContext, which: str) -> None:
        if ctx.method != "POST":
            description = f"The HTTP method {ctx.method} is invalid for the {which} endpoint"
            return ctx.exit(405, {"error": "invalid_method", "error_description": description},
                            {"WWW-Authenticate": bearer_challenge(self.config.realm, "invalid_method", description)})
        try:
            if which == "token":
                return await self.token(ctx)
            return await self.authorize(ctx)
        except NoDatabase as e:  # Kong's insert fails on a node without a database: a 500
            log.error("oauth2: %s", e)
        except Exception as e:  # the database is down or slow: Kong's error() is a 500 too
            log.error("oauth2: the %s endpoint could not reach the database: %r", which, e)
        ctx.exit(500, dict(UNEXPECTED))

    # ---- shared checks -------------------------------------------------------------------

    def https_error(self, ctx: RequestContext) -> dict | None:
        if ctx.scheme == "https":
            return None
        if self.config.accept_http_if_already_terminated and ctx.client_trusted:
            proto = ctx.get_header("x-forwarded-proto")
            if proto and "," in proto:
                return {"error": "access_denied", "error_description": "Only one X-Forwarded-Proto header allowed"}
            if proto and proto.lower() == "https":
                return None
        return {"error": "access_denied", "error_description": "You must use HTTPS"}

    def scope(self, params: Mapping[str, Any]) -> tuple[str | None, dict | None]:
        """Kong's retrieve_scope: the requested scopes, each of `config.scopes`."""
        scope = params.get("scope")
        if self.config.scopes is not None and scope is not None:
            if not isinstance(scope, str):
                return None, {"error": "invalid_scope", "error_description": "scope must be a string"}
            for name in scope.split():
                if name not in self.scopes:
                    return None, {"error": "invalid_scope", "error_description": f'"{name}" is an invalid scope'}
            return " ".join(scope.split()) or None, None
        if scope is None and self.config.mandatory_scope:
            return None, {"error": "invalid_scope", "error_description": "You must specify a scope"}
        return None, None

    def requires_pkce(self, client: Mapping[str, Any] | None, used: Any = None) -> bool:
        if client is None:
            return False
        pkce = self.config.pkce
        return bool(used) or (client.get("client_type") == "public" and pkce != "none") or (
            client.get("client_type") == "confidential" and pkce == "strict")

    def service_id(self, ctx: RequestContext) -> str | None:
        return None if self.config.global_credentials else (ctx.service or {}).get("id")

    async def generate_token(self, ctx: RequestContext, client: Mapping[str, Any], userid: Any, scope: str | None,
                       state: Any, disable_refresh: bool = False, existing: Mapping[str, Any] | None = None) -> dict:
        conf, now = self.config, int(time.time())
        expiration = int(conf.token_expiration)
        ttl = conf.refresh_token_ttl if conf.refresh_token_ttl > 0 and expiration > 0 else None
        if existing is not None and conf.reuse_refresh_token:
            refresh = existing.get("refresh_token")
            service = existing.get("service")
        else:
            refresh = new_secret() if not disable_refresh and expiration > 0 else None
            service = {"id": self.service_id(ctx)} if self.service_id(ctx) else None
        token = {"id": str(uuid.uuid4()), "access_token": new_secret(), "credential": {"id": client["id"]},
                 "service": service, "authenticated_userid": userid if isinstance(userid, str) else None,
                 "scope": scope, "expires_in": expiration, "created_at": now, "refresh_token": refresh}
        await issued_tokens().add_token(token, now + ttl if ttl else None)
        answer = {"access_token": token["access_token"], "token_type": "bearer"}
        if expiration > 0:
            answer["expires_in"] = expiration
        if refresh:
            answer["refresh_token"] = refresh
        return answer

    async def use_up(self, token: Mapping[str, Any]) -> bool:
        """The refreshed token goes away (Kong deletes it); False when another request took it first."""
        if token["access_token"] in self.config_tokens:  # Kong's delete fails without a database
            raise NoDatabase("a token of the declarative configuration cannot be refreshed (the node has no database)")
        return await issued_tokens().take_token(token["access_token"])

    # ---- the token endpoint --------------------------------------------------------------

    async def token(self, ctx: RequestContext) -> None:
        params = parameters(ctx)
        state = params.get("state")
        status, www = 400, None
        answer = self.https_error(ctx)
        if answer is None:
            answer, status, www = await self.issue(ctx, params)
        if state is not None:
            answer["state"] = state
        headers = dict(NO_CACHE)
        if "error" in answer and www:
            headers["WWW-Authenticate"] = www
        ctx.exit(status if "error" in answer else 200, answer, headers)

    async def issue(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[dict, int, str | None]:
        conf = self.config
        grant = params.get("grant_type")
        error: dict | None = None
        status, www = 400, None
        if not (grant in ("authorization_code", "refresh_token")
                or (conf.enable_client_credentials and grant == "client_credentials")
                or (conf.enable_password_grant and grant == "password")):
            error = {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
        client_id, client_secret, from_header = self.client_credentials(ctx, params)
        client = self.clients.get(client_id) if isinstance(client_id, str) and client_id else None
        if grant != "client_credentials":
            if client is not None and client.get("redirect_uris") is not None:
                allowed = client["redirect_uris"]
                redirect_uri = params.get("redirect_uri") or (allowed[0] if allowed else None)
                if redirect_uri not in allowed:
                    error = dict(BAD_REDIRECT)
            else:
                error = dict(INVALID_CLIENT)
                if from_header:
                    status, www = 401, 'Basic realm="OAuth2.0"'
        if client is not None:
            if client.get("client_type") == "confidential":
                if not self.secret_ok(client, client_secret):
                    error = dict(INVALID_CLIENT)
                    if from_header:
                        status, www = 401, 'Basic realm="OAuth2.0"'
            elif isinstance(client_secret, str) and client_secret.strip():
                error = {"error": "invalid_request", "error_description": "client_secret is disallowed for public clients"}
        if error is not None:
            return error, status, www
        answer = await self.grant(ctx, grant, params, client)
        return answer, 400, None

    async def grant(self, ctx: RequestContext, grant: str, params: dict[str, Any], client: Mapping[str, Any] | None) -> dict:
        state = params.get("state")
        if grant == "authorization_code":
            return await self.authorization_code(ctx, params, client)
        if grant == "client_credentials":
            userid = params.get("authenticated_userid")
            if userid and self.config.provision_key != params.get("provision_key"):
                return {"error": "invalid_provision_key", "error_description": "Invalid provision_key"}
            if client is None:
                return dict(INVALID_CLIENT)
            scope, error = self.scope(params)
            return error or await self.generate_token(ctx, client, userid, scope, state, disable_refresh=True)
        if grant == "password":
            userid = params.get("authenticated_userid")
            if self.config.provision_key != params.get("provision_key"):
                return {"error": "invalid_provision_key", "error_description": "Invalid provision_key"}
            if not isinstance(userid, str) or not userid.strip():
                return {"error": "invalid_authenticated_userid", "error_description": "Missing authenticated_userid parameter"}
            scope, error = self.scope(params)
            return error or await self.generate_token(ctx, client, userid, scope, state)
        return await self.refresh(ctx, params, client)

    async def authorization_code(self, ctx: RequestContext, params: dict[str, Any], client: Mapping[str, Any]) -> dict:
        invalid = {"error": "invalid_request", "error_description": "Invalid code"}
        code_value = params.get("code")
        code = await issued_tokens().peek_code(code_value) if isinstance(code_value, str) else None
        service_id = self.service_id(ctx)
        if code is None or (service_id and service_id != (code.get("service") or {}).get("id")):
            return invalid
        if code["credential"]["id"] != client["id"]:
            return invalid
        if self.requires_pkce(client, code.get("challenge_method")):
            error = _pkce_error(params, code)
            if error:
                return error
        if self.config.global_credentials and code.get("plugin") and code["plugin"]["id"] != self.plugin_id:
            return invalid
        if await issued_tokens().take_code(code_value) is None:
            return invalid  # used meanwhile by another request
        return await self.generate_token(ctx, client, code.get("authenticated_userid"), code.get("scope"), params.get("state"))

    async def refresh(self, ctx: RequestContext, params: dict[str, Any], client: Mapping[str, Any]) -> dict:
        value = params.get("refresh_token")
        token = None
        if isinstance(value, str) and value:
            token = self.config_tokens_by_refresh.get(value) or await issued_tokens().by_refresh_token(value)
        service_id = self.service_id(ctx)
        if token is None or (service_id and service_id != (token.get("service") or {}).get("id")):
            return {"error": "invalid_request", "error_description": "Invalid refresh_token"}
        if token["credential"]["id"] != client["id"]:
            return dict(INVALID_CLIENT)
        for scope in (token.get("scope") or "").split():
            if scope not in self.scopes:
                return {"error": "invalid_scope", "error_description": "Scope mismatch"}
        # Kong deletes the refreshed token, or with reuse_refresh_token gives it a new access
        # token: either way the old access token stops working; a refresh racing this one loses.
        if not await self.use_up(token):
            return {"error": "invalid_request", "error_description": "Invalid refresh_token"}
        return await self.generate_token(ctx, client, token.get("authenticated_userid"), token.get("scope"),
                                   params.get("state"), existing=token)

    def client_credentials(self, ctx: RequestContext, params: Mapping[str, Any]) -> tuple[Any, Any, bool]:
        """(client_id, client_secret, from the Authorization header), as Kong's retrieve_client_credentials."""
        if params.get("client_id") and params.get("client_secret"):
            return params["client_id"], params["client_secret"], False
        header = ctx.get_header(self.config.auth_header_name)
        if header is not None:
            scheme, _, rest = header.strip().partition(" ")
            if scheme.lower() == "basic" and rest.strip():
                try:
                    decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
                except (binascii.Error, ValueError):
                    return None, None, True
                client_id, sep, client_secret = decoded.partition(":")
                return client_id, client_secret if sep else None, True
            return None, None, True
        return params.get("client_id"), None, False

    @staticmethod
    def secret_ok(client: Mapping[str, Any], given: Any) -> bool:
        stored = client.get("client_secret") or ""
        if not isinstance(given, str):
            return False
        if client.get("hash_secret"):
            return verify_client_secret(given, stored)
        return hmac.compare_digest(stored.encode(), given.encode())

    # ---- the authorize endpoint ----------------------------------------------------------

    async def authorize(self, ctx: RequestContext) -> None:
        params = parameters(ctx)
        state = params.get("state")
        answer, redirect_uri, implicit = self.https_error(ctx), None, False
        if answer is None:
            answer, redirect_uri, implicit = await self.authorization(ctx, params)
        if state is not None:
            answer["state"] = state
        status = 400 if "error" in answer else 200
        body = {"redirect_uri": _with_params(redirect_uri, answer, implicit)} if redirect_uri else answer
        ctx.exit(status, body, dict(NO_CACHE))

    async def authorization(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[dict, str | None, bool]:
        conf = self.config
        if conf.provision_key != params.get("provision_key"):
            return {"error": "invalid_provision_key", "error_description": "Invalid provision_key"}, None, False
        userid = params.get("authenticated_userid")
        if not isinstance(userid, str) or not userid.strip():
            return ({"error": "invalid_authenticated_userid", "error_description": "Missing authenticated_userid parameter"},
                    None, False)
        error: dict | None = None
        response_type = params.get("response_type")
        if not ((response_type == "code" and conf.enable_authorization_code)
                or (response_type == "token" and conf.enable_implicit_grant)):
            error = {"error": "unsupported_response_type", "error_description": "Invalid response_type"}
        scope, scope_error = self.scope(params)
        error = scope_error or error
        client_id = params.get("client_id")
        client = self.clients.get(client_id) if isinstance(client_id, str) and client_id else None
        redirect_uri = None
        if client is None or client.get("redirect_uris") is None:
            error = dict(INVALID_CLIENT)
        else:
            allowed = client["redirect_uris"]
            redirect_uri = params.get("redirect_uri") or (allowed[0] if allowed else None)
            if redirect_uri not in allowed:
                error = dict(BAD_REDIRECT)
                redirect_uri = allowed[0] if allowed else None
        challenge, challenge_error, method = _challenge(params)
        if challenge_error:
            error = {"error": "invalid_request", "error_description": challenge_error}
        elif client is not None and not challenge and self.requires_pkce(client):
            error = {"error": "invalid_request",
                     "error_description": f"code_challenge is required for {client.get('client_type')} clients"}
        if error is not None:
            return error, redirect_uri if isinstance(redirect_uri, str) else None, False
        if response_type == "code":
            now = int(time.time())
            code = {"code": new_secret(), "credential": {"id": client["id"]}, "created_at": now,
                    "service": {"id": self.service_id(ctx)} if self.service_id(ctx) else None,
                    "plugin": {"id": self.plugin_id} if self.plugin_id else None, "authenticated_userid": userid,
                    "scope": scope, "challenge": challenge, "challenge_method": method if challenge else None}
            await issued_tokens().add_code(code, CODE_TTL)
            return {"code": code["code"]}, redirect_uri, False
        answer = await self.generate_token(ctx, client, userid, scope, params.get("state"), disable_refresh=True)
        return answer, redirect_uri, True


def _challenge(params: Mapping[str, Any]) -> tuple[str | None, str | None, str]:
    """Kong's retrieve_code_challenge: (challenge, error, method)."""
    challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
    if method and not challenge:
        return None, "code_challenge is required when code_method is present", "S256"
    if challenge is not None and not isinstance(challenge, str):
        return None, "code_challenge is not a string", "S256"
    if challenge:
        try:  # normalised to unpadded base64url, as Kong re-encodes what decodes
            raw = base64.urlsafe_b64decode(challenge + "=" * (-len(challenge) % 4))
            challenge = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        except (binascii.Error, ValueError):
            pass
        if method and method not in ("S256", "s256"):
            return None, "code_challenge_method is not supported, must be S256", "S256"
    return challenge or None, None, "S256"


def _pkce_error(params: Mapping[str, Any], code: Mapping[str, Any]) -> dict | None:
    verifier = params.get("code_verifier")
    if verifier is None:
        return {"error": "invalid_request", "error_description": "code_verifier is required for PKCE authorization requests"}
    if not isinstance(verifier, str):
        return {"error": "invalid_request", "error_description": "code_verifier is not a string"}
    if not 43 <= len(verifier) <= 128:
        return {"error": "invalid_request", "error_description": "code_verifier must be between 43 and 128 characters"}
    if not code.get("challenge") or not hmac.compare_digest(s256(verifier), code["challenge"]):
        return {"error": "invalid_grant", "error_description": "Invalid code"}
    return None


def _with_params(redirect_uri: str, answer: Mapping[str, Any], implicit: bool) -> str:
    """The redirect URI with the answer merged into its query (or fragment, implicit grant)."""
    parts = urlsplit(redirect_uri)
    existing = dict(parse_qsl(parts.fragment if implicit else parts.query, keep_blank_values=True))
    merged = {**existing, **{k: str(v) for k, v in answer.items() if v is not None}}
    encoded = urlencode(sorted(merged.items()), quote_via=quote)  # Kong: sorted, spaces as %20
    if implicit:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, encoded))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, encoded, parts.fragment))
