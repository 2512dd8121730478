"""Dataplane tokens: signed by the control plane, bound to a name, a mesh and tags, revocable.

Rules:
- A token is a JWT (ES256) signed with the mesh CA key the control plane keeps in
  `<prefix>/mesh/` (`kid` = "mesh-ca"), with Kuma's claims `Name`, `Mesh`, `Tags`, `jti`, `iat`,
  `nbf`, `exp`. An empty `Name` binds the token to the mesh only; `Tags` must be a subset of
  the data plane's inbound tags (each value may list alternatives, as `web,web-api`).
- Beyond Kuma, the token carries the mesh CA certificate (`ca`, base64 DER): the data plane
  trusts exactly that CA for the control plane's TLS, so no CA file has to be copied. The
  token is secret and travels over a trusted channel anyway; whoever can forge one could
  already register data planes.
- Whitespace and invisible characters are removed from a token before use (kuma#4567: pasted
  tokens carrying them "always fail").
- Revocation: `POST /tokens/dataplane/revocations` adds the token's `jti` to the mesh's
  revocation list; a revoked token is refused at the next connection, and a data plane
  connected with it is disconnected within seconds (`_dpserver`; Kuma checks only at connection).
- `--valid-for` takes Go durations (`24h`, `1h30m`, `90s`); the default is Kuma's, 87600h.
"""
from __future__ import annotations

import base64
import re
import time
import uuid
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from meshway.goduration import parse_duration

KID = "mesh-ca"
DEFAULT_VALID_FOR = "87600h"
_INVISIBLE = re.compile(r"[\s\u200b-\u200d\u2060\ufeff]+")


class TokenError(ValueError):
    """A token is missing, malformed, expired, revoked or not for this data plane."""


def clean(token: str) -> str:
    return _INVISIBLE.sub("", token or "")


def issue(ca, *, name: str = "", mesh: str = "default", tags: dict[str, str] | None = None,
          valid_for: float = parse_duration(DEFAULT_VALID_FOR)) -> str:
    """A token signed by the mesh CA (`meshway.mesh.MeshCA`)."""
    from cryptography.hazmat.primitives import serialization

    now = int(time.time())
    claims = {"Name": name, "Mesh": mesh, "Tags": {k: v.split(",") for k, v in (tags or {}).items()},
              "Type": "dataplane", "jti": str(uuid.uuid4()), "iat": now, "nbf": now - 60, "exp": now + int(valid_for),
              "ca": base64.b64encode(ca.cert.public_bytes(serialization.Encoding.DER)).decode()}
    return jwt.encode(claims, ca.key, algorithm="ES256", headers={"kid": KID})


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims, not yet verified (a data plane reads its mesh, name and pinned CA)."""
    try:
        return jwt.decode(clean(token), options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise TokenError(f"the dataplane token cannot be read: {e}") from None


def pinned_ca_pem(token: str) -> str | None:
    """The mesh CA certificate the token pins, as PEM (None for a token without one)."""
    der = unverified_claims(token).get("ca")
    if not der:
        return None
    body = "\n".join(der[i:i + 64] for i in range(0, len(der), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def verify(token: str, ca, revoked: set[str] = frozenset()) -> dict[str, Any]:
    """The claims of a token this control plane signed; TokenError saying what is wrong."""
    try:
        header = jwt.get_unverified_header(clean(token))
    except jwt.PyJWTError as e:
        raise TokenError(f"the dataplane token is not a token: {e}") from None
    if header.get("kid") != KID:
        raise TokenError("the dataplane token was not signed by this control plane")
    try:
        claims = jwt.decode(clean(token), ca.key.public_key(), algorithms=["ES256"],
                            options={"require": ["exp", "jti", "Mesh"]})
    except jwt.ExpiredSignatureError:
        raise TokenError("the dataplane token has expired; generate a new one") from None
    except jwt.PyJWTError as e:
        raise TokenError(f"the dataplane token is invalid: {e}") from None
    if claims["jti"] in revoked:
        raise TokenError("the dataplane token has been revoked")
    return claims


def check_binding(claims: dict[str, Any], mesh: str, name: str, tags: dict[str, set[str]]) -> None:
    """TokenError unless the token is for this data plane (mesh, name, tags)."""
    if claims.get("Mesh") != mesh:
        raise TokenError(f"the dataplane token is for mesh {claims.get('Mesh')!r}, not {mesh!r}")
    if claims.get("Name") and claims["Name"] != name:
        raise TokenError(f"the dataplane token is for data plane {claims['Name']!r}, not {name!r}")
    for key, allowed in (claims.get("Tags") or {}).items():
        if not tags.get(key) or not tags[key] <= set(allowed):
            raise TokenError(f"the dataplane token allows {key} = {','.join(allowed)} only")


def token_routes(ctx: Any) -> list[Route]:
    """`POST /tokens/dataplane` (Kuma's) and `POST /tokens/dataplane/revocations` (meshway's)."""
    from ._api import _body, _error

    cache: dict[str, Any] = {}

    def mesh_ca():
        if "ca" not in cache:
            from ._ca import MeshCA
            from ._sharedca import share_ca

            directory = ctx.settings.prefix_path / "mesh"  # the database's CA: every node signs the same tokens
            cache["ca"] = share_ca(ctx.store, directory) if ctx.store is not None else MeshCA.load_or_create(directory)
        return cache["ca"]

    async def generate(request: Request) -> Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _error(400, "Could not issue a token", "the body must be an object")
        try:
            valid_for = parse_duration(str(body.get("validFor") or DEFAULT_VALID_FOR))
        except ValueError as e:
            return _error(400, "Could not issue a token", str(e), [("validFor", str(e))])
        mesh, name = body.get("mesh") or "default", body.get("name") or ""
        tags = body.get("tags") or {}
        if not isinstance(tags, dict) or not all(isinstance(v, (str, list)) for v in tags.values()):
            return _error(400, "Could not issue a token", "tags must map names to values", [("tags", "invalid")])
        tags = {k: ",".join(v) if isinstance(v, list) else v for k, v in tags.items()}
        if ctx.store is not None and await ctx.call(ctx.store.mesh.get, "Mesh", mesh, mesh) is None:
            return _error(400, "Could not issue a token", f"mesh of name {mesh} is not found", [("mesh", "not found")])
        ca = await ctx.call(mesh_ca)
        return PlainTextResponse(issue(ca, name=name, mesh=mesh, tags=tags, valid_for=valid_for))

    async def revoke(request: Request) -> Response:
        body = await _body(request)
        if ctx.store is None:
            return _error(405, "Method not allowed", "revocations need a database")
        try:
            claims = verify(str((body or {}).get("token") or ""), await ctx.call(mesh_ca))
        except TokenError as e:
            if "revoked" in str(e):
                return Response(status_code=204)
            return _error(400, "Could not revoke the token", str(e), [("token", str(e))])
        await ctx.call(ctx.store.mesh.revoke, claims["Mesh"], claims["jti"])
        return Response(status_code=204)

    return [Route("/tokens/dataplane", generate, methods=["POST"]),
            Route("/tokens/dataplane/revocations", revoke, methods=["POST"])]
