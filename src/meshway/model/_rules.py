"""Entity checks: rules spanning several fields, with Kong's messages (routes_subschemas.lua, services.lua...).

Each check takes the validated entity and a CheckContext and returns `{field: message}` or
`{"@entity": [messages]}`; a check may also fill a default that depends on another field.
"""
from __future__ import annotations

import hashlib
from typing import Any

from meshway.model import _values, _vaults
from meshway.model._entity import CheckContext

PROTOCOL_GROUPS = (("http", "https"), ("tcp", "tls", "udp"), ("tls_passthrough",), ("grpc", "grpcs"), ("ws", "wss"))
STREAM = ("tcp", "tls", "udp", "tls_passthrough")
SNI_PROTOCOLS = ("grpcs", "https", "tls", "tls_passthrough", "wss")
TLS_PORT_PROTOCOLS = ("https", "grpcs", "tls", "tls_passthrough", "wss")
HTTP_LIKE = ("http", "https", "ws", "wss")  # services that may have a path
_STREAM_WORDS = "'tcp', 'tls', 'tls_passthrough' or 'udp'"


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def _one_of_msg(names: tuple[str, ...], proto: str) -> str:
    return f"must set one of {', '.join(repr(n) for n in names)} when 'protocols' is {proto}"


def _entity_error(message: str) -> dict[str, Any]:
    return {"@entity": [message]}


def route_protocol_groups(route: dict, ctx: CheckContext) -> dict | None:
    protocols = set(route["protocols"] or ())
    groups = [g for g in PROTOCOL_GROUPS if protocols & set(g)]
    if len(groups) > 1:
        shown = ", ".join("(" + ", ".join(repr(p) for p in g) + ")" for g in PROTOCOL_GROUPS)
        return {"protocols": f"these sets are mutually exclusive: {shown}"}
    if not _empty(route["snis"]) and not protocols & set(SNI_PROTOCOLS):
        return _entity_error("'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'")  # Kong OSS's words
    return None


def route_matching_fields(route: dict, ctx: CheckContext) -> dict | None:
    protocols = set(route["protocols"] or ())
    if protocols & {"grpc", "grpcs"}:
        return _grpc_route(route, protocols, ctx)
    if protocols & set(STREAM):
        return _stream_route(route, protocols)
    return _http_route(route, protocols)


def _forbidden(route: dict, names: tuple[str, ...], when: str) -> dict[str, str]:
    return {n: f"cannot set '{n}' when 'protocols' is {when}" for n in names if not _empty(route[n])}


def _http_route(route: dict, protocols: set) -> dict | None:
    plain, tls = ("ws", "wss") if protocols & {"ws", "wss"} else ("http", "https")
    errors = _forbidden(route, ("sources", "destinations"), f"'{plain}' or '{tls}'")
    if errors:
        return errors
    names = ("methods", "hosts", "headers", "paths") + (("snis",) if tls in protocols else ())
    if all(_empty(route[n]) for n in names):
        return _entity_error(_one_of_msg(names, f"'{tls}'" if tls in protocols else f"'{plain}'"))
    return None


def _stream_route(route: dict, protocols: set) -> dict | None:
    errors = _forbidden(route, ("methods", "hosts", "paths", "headers"), _STREAM_WORDS)
    if errors:
        return errors
    if protocols == {"tls_passthrough"}:
        return None if not _empty(route["snis"]) else _entity_error("must set snis when 'protocols' is 'tls_passthrough'")
    names = ("sources", "destinations", "snis")
    if all(_empty(route[n]) for n in names):
        return _entity_error(_one_of_msg(names, "'tcp', 'tls' or 'udp'"))
    return None


def _grpc_route(route: dict, protocols: set, ctx: CheckContext) -> dict | None:
    if "strip_path" not in ctx.provided and ctx.creating:
        route["strip_path"] = False  # Kong's grpc subschema defaults strip_path to false
    errors = _forbidden(route, ("methods", "sources", "destinations"), "'grpc' or 'grpcs'")
    if route["strip_path"]:
        errors["strip_path"] = "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"
    if errors:
        return errors
    names = ("hosts", "headers", "paths") + (("snis",) if "grpcs" in protocols else ())
    if all(_empty(route[n]) for n in names):
        return _entity_error(_one_of_msg(names, "'grpcs'" if "grpcs" in protocols else "'grpc'"))
    return None


def service_port_default(service: dict, ctx: CheckContext) -> None:
    if ctx.creating and "port" not in ctx.provided and service["protocol"] in TLS_PORT_PROTOCOLS:
        service["port"] = 443


def service_protocol_fields(service: dict, ctx: CheckContext) -> dict | None:
    errors: dict[str, str] = {}
    if service["protocol"] not in HTTP_LIKE and service["path"] is not None:
        errors["path"] = "value must be null"
    if service["protocol"] not in ("https", "wss"):
        for name in ("client_certificate", "tls_verify", "tls_verify_depth", "ca_certificates"):
            if service[name] is not None:
                errors[name] = "value must be null"
    return errors


def consumer_identity(consumer: dict, ctx: CheckContext) -> dict | None:
    if consumer["username"] is None and consumer["custom_id"] is None:
        return _entity_error("at least one of these fields must be non-empty: 'custom_id', 'username'")
    return None


def certificate_pair(cert: dict, ctx: CheckContext) -> dict | None:
    if (cert["cert_alt"] is None) != (cert["key_alt"] is None):
        return _entity_error("all or none of these fields must be set: 'cert_alt', 'key_alt'")
    if any(_vaults.is_reference(cert[f]) for f in ("cert", "key", "cert_alt", "key_alt")):
        return None  # checked with the secrets in place, when the references are resolved
    if not _values.cert_matches_key(cert["cert"], cert["key"]):
        return _entity_error("certificate does not match key")
    if cert["cert_alt"] and not _values.cert_matches_key(cert["cert_alt"], cert["key_alt"]):
        return _entity_error("alternative certificate does not match key")
    return None


def ca_certificate(ca: dict, ctx: CheckContext) -> dict | None:
    if not _values.cert_is_ca(ca["cert"]):
        return {"cert": 'certificate does not appear to be a CA because it is missing the "CA" basic constraint'}
    ca["cert_digest"] = _values.cert_digest(ca["cert"])
    return None


def target_normalize(target: dict, ctx: CheckContext) -> None:
    target["target"] = _values.normalize_target(target["target"])


def upstream_hashing(up: dict, ctx: CheckContext) -> dict | None:
    errors: dict[str, str] = {}
    for prefix in ("hash_on", "hash_fallback"):
        needs = {"header": f"{prefix}_header", "query_arg": f"{prefix}_query_arg", "uri_capture": f"{prefix}_uri_capture"}
        field = needs.get(up[prefix])
        if field and up[field] is None:
            errors[field] = "required field missing"
    if up["hash_on"] == "cookie" and up["hash_on_cookie"] is None:
        errors["hash_on_cookie"] = "required field missing"
    if up["hash_on"] == "none" and up["hash_fallback"] != "none":
        errors["hash_fallback"] = "must be 'none' when 'hash_on' is 'none'"
    return errors


def basicauth_password(cred: dict, ctx: CheckContext) -> None:
    # The hash format belongs to the basic-auth plugin, which verifies it. `_transform: false`
    # files and exported snapshots carry the hash already: never hash twice.
    from meshway.plugins import hash_password, is_password_hash, new_salt

    if not ctx.transform or "password" not in ctx.provided or is_password_hash(cred["password"]):
        return
    salt = hashlib.sha256(ctx.seed.encode()).hexdigest()[:22] if ctx.seed else new_salt()
    cred["password"] = hash_password(cred["password"], salt)


def oauth2_client_secret(cred: dict, ctx: CheckContext) -> None:
    # Kong's `hash_secret` transformation: the secret is stored hashed (Kong's PHC pbkdf2 format,
    # so dumps from Kong verify here); a value that is a hash already is kept as it is.
    from meshway.plugins import hash_client_secret, is_client_secret_hash

    if not ctx.transform or not cred["hash_secret"] or not cred["client_secret"]:
        return
    if not is_client_secret_hash(cred["client_secret"]):
        cred["client_secret"] = hash_client_secret(cred["client_secret"])


def jwt_rsa_key(cred: dict, ctx: CheckContext) -> dict | None:
    if cred["algorithm"] is None:  # an explicit null: Kong verifies such a secret as HS256
        cred["algorithm"] = "HS256"
    if cred["algorithm"][:2] in ("RS", "ES", "PS") and cred["rsa_public_key"] is None:
        return {"rsa_public_key": f"required field missing (algorithm {cred['algorithm']})"}
    return None


# Bundled plugins Kong (Enterprise, which has consumer groups) declares `typedefs.no_consumer_group` for
# (kong/plugins/*/schema.lua): authentication, logging and metrics. Others, custom ones too, may be scoped.
NO_CONSUMER_GROUP = frozenset((
    "acl", "acme", "basic-auth", "bot-detection", "correlation-id", "cors", "file-log", "hmac-auth", "http-log",
    "jwt", "key-auth", "ldap-auth", "oauth2", "opentelemetry", "prometheus", "request-size-limiting",
    "response-ratelimiting", "session", "statsd", "syslog", "tcp-log", "udp-log", "zipkin"))


def plugin_config(plugin: dict, ctx: CheckContext) -> dict | None:
    from meshway import plugins  # late: the registry imports bundled plugins, which may import model

    try:
        plugin["config"] = plugins.validate_plugin_config(plugin["name"], plugin["config"])
    except plugins.PluginConfigError as e:
        return e.fields
    cls = plugins.available_plugins()[plugin["name"]]
    protocols = _plugin_protocols(plugin, cls, ctx)
    if protocols:
        return protocols
    if plugin["consumer"] is not None and cls.no_consumer:
        return {"consumer": "value must be null"}  # Kong's typedefs.no_consumer
    if plugin.get("consumer_group") is not None and plugin["name"] in NO_CONSUMER_GROUP:
        return {"consumer_group": "value must be null"}  # Kong's typedefs.no_consumer_group
    if getattr(cls, "global_only", False):  # Kong's no_route / no_service (acme)
        scoped = {f: "value must be null" for f in ("route", "service") if plugin.get(f) is not None}
        if scoped:
            return scoped
    return None


def _plugin_protocols(plugin: dict, cls: Any, ctx: CheckContext) -> dict | None:
    """Kong's plugin subschemas redefine `protocols`: `typedefs.protocols_http` (HTTP only) or
    `typedefs.protocols` (stream too), with that plugin's default. One rule for every route kind:
    a plugin runs for a request or session whose protocol is in its `protocols`."""
    if ctx.creating and "protocols" not in ctx.provided:
        plugin["protocols"] = list(cls.default_protocols)
        return None
    allowed = cls.allowed_protocols()
    bad = {i: "expected one of: " + ", ".join(allowed)
           for i, p in enumerate(plugin.get("protocols") or ()) if p not in allowed}
    return {"protocols": bad} if bad else None


def vault_config(vault: dict, ctx: CheckContext) -> dict | None:
    if vault["name"] not in _vaults.BUNDLED_VAULTS:
        return {"name": f"vault '{vault['name']}' is not installed"}  # Kong's subschema_error
    return _vaults.check_env_config(vault["config"]) or None


_WS_FOR_HTTP = (("ws", "http"), ("wss", "https"))


def plugin_runs_on_route(plugin_protocols: Any, route_protocols: Any) -> bool:
    """Whether a plugin with these `protocols` can run for some request of a route with these (Kong's
    `has_a_common_protocol_with_route`, with the proxy's WebSocket rule: on a ws/wss route, a plugin
    naming neither runs for ws where it runs for http and for wss where it runs for https)."""
    plugin, route = set(plugin_protocols or ()), set(route_protocols or ("http", "https"))
    if route & {"ws", "wss"} and not plugin & {"ws", "wss"}:
        plugin |= {ws for ws, http in _WS_FOR_HTTP if http in plugin}
    return bool(plugin & route)
