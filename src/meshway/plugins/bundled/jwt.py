"""jwt: a consumer is identified by a signed JSON Web Token (HS*, RS*, ES*, PS* via PyJWT).

Theory of operation: the token is found in the query string (`uri_param_names`), cookies
(`cookie_names`) or `Bearer` headers (`header_names`); its `key_claim_name` claim (or header
field) names a jwt_secret; the secret's algorithm must equal the token's `alg`; the signature
is checked with a key prepared once per config; then `claims_to_verify` and
`maximum_expiration`. Verified signatures are cached per token string, claims never are
(they depend on the clock).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from http.cookies import CookieError, SimpleCookie
from typing import Any, Literal, Mapping

import jwt as pyjwt
from pydantic import Field, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.bundled import _body
from meshway.plugins.bundled._auth import AnonymousFallback, consumers_by_id

log = logging.getLogger("meshway.plugins")
UNAUTHORIZED = {"message": "Unauthorized"}
CACHE_SIZE = 10_000
# "none" is never acceptable: a token must be signed.
_ALGORITHMS = frozenset(pyjwt.algorithms.get_default_algorithms()) - {"none"}


class JwtConfig(PluginConfig):
    """Kong's jwt schema."""

    uri_param_names: list[str] = Field(default_factory=lambda: ["jwt"])
    cookie_names: list[str] = Field(default_factory=list)
    header_names: list[str] = Field(default_factory=lambda: ["authorization"])
    key_claim_name: str = "iss"
    secret_is_base64: bool = False
    claims_to_verify: list[Literal["exp", "nbf"]] | None = None
    anonymous: str | None = None
    run_on_preflight: bool = True
    maximum_expiration: float = Field(default=0, ge=0, le=31536000)
    realm: str | None = None

    @model_validator(mode="after")
    def _exp_checked(self) -> "JwtConfig":
        if self.maximum_expiration > 0 and "exp" not in (self.claims_to_verify or ()):
            raise ValueError("claims_to_verify must contain 'exp' when maximum_expiration is set")
        return self


class BadToken(ValueError):
    """The token cannot be decoded."""


class Jwt(Plugin):
    """Authenticates a consumer by JWT."""

    name = "jwt"
    priority = 1450
    no_consumer = True
    Config = JwtConfig

    def __init__(self, config: JwtConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.anonymous = AnonymousFallback(self.name, index, config.anonymous)
        self.secrets = _load_secrets(index, config.secret_is_base64)
        self.verified: dict[str, bool] = {}
        self.claim = config.key_claim_name
        self.claims_to_verify = tuple(config.claims_to_verify or ())

    def access(self, ctx: RequestContext) -> None:
        if ctx.method == "OPTIONS" and not self.config.run_on_preflight:
            return
        if self.anonymous.skip(ctx):
            return
        tokens = self.find_tokens(ctx)
        if len(tokens) > 1:
            return self.anonymous.fail(ctx, 401, {"message": "Multiple tokens provided"})
        if not tokens:
            return self.anonymous.fail(ctx, 401, UNAUTHORIZED)
        token = tokens.pop()
        error = self.check(ctx, token)
        if error is not None:
            return self.anonymous.fail(ctx, 401, error)

    def find_tokens(self, ctx: RequestContext) -> set[str]:
        """Every distinct token the request carries."""
        conf, tokens = self.config, set()
        if conf.uri_param_names and ctx.query:
            args = _body.decode_args(ctx.query)
            tokens.update(v for name in conf.uri_param_names for v in args.get(name, ()) if v)
        if conf.cookie_names:
            cookies = _cookies(ctx.get_header("cookie"))
            tokens.update(cookies[n] for n in conf.cookie_names if cookies.get(n))
        for name in conf.header_names:
            scheme, _, value = (ctx.get_header(name) or "").strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                tokens.add(value.strip())
        return tokens

    def check(self, ctx: RequestContext, token: str) -> dict[str, Any] | None:
        """None when the token authenticates its consumer (then attached); else the 401 body."""
        try:
            header, claims, signing_input, signature = _decode(token)
        except BadToken as e:
            return {"message": f"Bad token; {e}"}
        key_id = claims.get(self.claim, header.get(self.claim))
        if key_id is None:
            return {"message": f"No mandatory '{self.claim}' in claims"}
        if not isinstance(key_id, str) or not key_id:
            return {"message": f"Invalid '{self.claim}' in claims"}
        found = self.secrets.get(key_id)
        if found is None:
            return {"message": f"No credentials found for given '{self.claim}'"}
        secret, algorithm, key, consumer_id = found
        if header.get("alg") != secret.get("algorithm"):
            return {"message": "Invalid algorithm"}
        if key is None:
            return {"message": "Invalid key/secret"}
        if not self.signature_ok(token, algorithm, key, signing_input, signature):
            return {"message": "Invalid signature"}
        errors = self.claim_errors(claims)
        if errors:
            return errors
        return self.attach(ctx, secret, consumer_id, key_id, token)

    def signature_ok(self, token: str, algorithm: Any, key: Any, signing_input: bytes, signature: bytes) -> bool:
        ok = self.verified.get(token)
        if ok is None:
            try:
                ok = bool(algorithm.verify(signing_input, key, signature))
            except Exception:  # a malformed signature for this key type is just a bad signature
                ok = False
            if len(self.verified) >= CACHE_SIZE:
                self.verified.clear()
            self.verified[token] = ok
        return ok

    def claim_errors(self, claims: Mapping[str, Any]) -> dict[str, str]:
        """Kong's registered-claim checks: claim name -> message."""
        now, errors = time.time(), {}
        for name in self.claims_to_verify:
            value = claims.get(name)
            if not _is_number(value):
                errors[name] = "must be a number"
            elif name == "exp" and value <= now:
                errors[name] = "token expired"
            elif name == "nbf" and value > now:
                errors[name] = "token not valid yet"
        limit = self.config.maximum_expiration
        if limit > 0 and "exp" not in errors:
            exp = claims.get("exp")
            if not _is_number(exp) or exp - now > limit:
                errors["exp"] = "exceeds maximum allowed expiration"
        return errors

    def attach(self, ctx: RequestContext, secret: Mapping, consumer: Mapping | None, key_id: str, token: str) -> dict | None:
        if consumer is None:
            return {"message": f"Could not find consumer for '{self.claim}={key_id}'"}
        ctx.authenticate(consumer, secret, secret.get("key"))
        ctx.shared["authenticated_jwt_token"] = token
        return None


def _load_secrets(index: ConfigIndex, secret_is_base64: bool) -> dict[str, tuple]:
    """key -> (secret, algorithm, prepared key or None, consumer or None)."""
    consumers = consumers_by_id(index)
    table = {}
    for secret in index.entities("jwt_secrets"):
        name = secret.get("algorithm") or "HS256"
        try:
            algorithm = pyjwt.get_algorithm_by_name(name)
            key = algorithm.prepare_key(_raw_key(secret, name, secret_is_base64))
        except Exception as e:  # unusable key material: requests naming it get "Invalid key/secret"
            log.error("jwt: secret %s: unusable %s key: %s", secret.get("id"), name, e)
            algorithm, key = None, None
        consumer = consumers.get((secret.get("consumer") or {}).get("id") or "")
        table[secret["key"]] = (secret, algorithm, key, consumer)
    return table


def _raw_key(secret: Mapping[str, Any], algorithm: str, is_base64: bool) -> bytes | str:
    if algorithm.startswith("HS"):
        value = secret.get("secret") or ""
        return base64.b64decode(value) if is_base64 else value.encode()
    value = secret.get("rsa_public_key")
    if not value:
        raise ValueError("no public key")
    return value


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _decode(token: str) -> tuple[dict, dict, bytes, bytes]:
    """(header, claims, signing input, signature) of a compact JWS."""
    parts = token.split(".")
    if len(parts) != 3:
        raise BadToken("Invalid token")
    try:
        header, claims = json.loads(_b64url(parts[0])), json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, binascii.Error):
        raise BadToken("Invalid JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise BadToken("Invalid JSON")
    if str(header.get("typ", "JWT")).upper() != "JWT":
        raise BadToken("Invalid typ")
    if header.get("alg") not in _ALGORITHMS:
        raise BadToken("Invalid alg")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), signature


def _cookies(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


PLUGIN = Jwt
