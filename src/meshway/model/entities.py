"""Entity declarations (Kong 3.x field names, defaults and rules). The one place a field is added.

The store's tables, the Admin API's routes (top-level, nested, by endpoint key), the
declarative parser's nesting and the OpenAPI document are all generated from `ENTITIES`.
Order matters: an entity comes after every entity it references (storage and import order).
"""
from __future__ import annotations

import re

from meshway.model import _rules, _values, _vaults
from meshway.model._entity import Companion, Entity
from meshway.model._types import (Array, Boolean, Field, Foreign, Integer, Json, Map, Number, Record,
                                  String, Uuid)
from meshway.model._url import expand_url

# `ws` and `wss` are Kong Enterprise's WebSocket protocols (3.0+): proxied as http and https,
# the upgrade handshake being an HTTP request (files written for Kong EE, and Supabase's, use them).
PROTOCOLS = ("grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss")
NAME_HINT = "it must only contain alphanumeric and '., -, _, ~' characters"
MAX_TIMEOUT = 2**31 - 2


def _name_check(value: str) -> str | None:
    if re.match(r"^[\w.~-]+$", value):
        return None
    return f"invalid value '{value}': {NAME_HINT}"


def _common(**fields: Field) -> dict[str, Field]:
    return {
        "id": Uuid(auto="uuid"),
        "created_at": Integer(auto="timestamp"),
        "updated_at": Integer(auto="timestamp"),
        **fields,
        "tags": Array(String(checks=(_values.check_tag,)), set=True),
    }


def _timeout() -> Integer:
    return Integer(default=60000, between=(1, MAX_TIMEOUT))


def _statuses(default: list[int]) -> Array:
    return Array(Integer(between=(100, 999)), default=default)


def _counter() -> Integer:
    return Integer(default=0, between=(0, 255))


def _ip_port() -> Record:
    def one_set(v: dict) -> str | None:
        if v.get("ip") is None and v.get("port") is None:
            return "at least one of these fields must be non-empty: 'ip', 'port'"
        return None

    return Record({"ip": String(checks=(_values.check_cidr,)), "port": Integer(between=(0, 65535))}, checks=(one_set,))


SERVICES = Entity(
    name="services", admin_path="services", endpoint_key="name", natural_key=("name",),
    description="An upstream service that routes forward requests to.",
    fields=_common(
        name=String(unique=True, checks=(_name_check,)),
        retries=Integer(default=5, between=(0, 32767)),
        protocol=String(required=True, default="http", one_of=PROTOCOLS),
        host=String(required=True, checks=(_values.check_host,)),
        port=Integer(required=True, default=80, between=(0, 65535)),
        path=String(checks=(_values.check_path,)),
        connect_timeout=_timeout(), write_timeout=_timeout(), read_timeout=_timeout(),
        client_certificate=Foreign("certificates"),
        tls_verify=Boolean(),
        tls_verify_depth=Integer(between=(0, 64)),
        ca_certificates=Array(Uuid()),
        enabled=Boolean(required=True, default=True),
    ),
    checks=(_rules.service_port_default, _rules.service_protocol_fields),
    shorthands={"url": expand_url},
)

ROUTES = Entity(
    name="routes", admin_path="routes", endpoint_key="name", natural_key=("name",),
    description="Rules that match client requests and send them to a service.",
    fields=_common(
        name=String(unique=True),
        protocols=Array(String(one_of=PROTOCOLS), set=True, len_min=1, required=True, default=["http", "https"]),
        methods=Array(String(checks=(_values.check_method,)), set=True),
        hosts=Array(String(checks=(_values.check_wildcard_host,))),
        paths=Array(String(checks=(_values.check_route_path,))),
        headers=Map(String(checks=(_values.check_header_name,)), Array(String(checks=(_values.check_header_value,)), len_min=1)),
        https_redirect_status_code=Integer(required=True, default=426, one_of=(426, 301, 302, 307, 308)),
        regex_priority=Integer(default=0),
        strip_path=Boolean(required=True, default=True),
        path_handling=String(default="v0", one_of=("v0", "v1")),
        preserve_host=Boolean(required=True, default=False),
        request_buffering=Boolean(required=True, default=True),
        response_buffering=Boolean(required=True, default=True),
        snis=Array(String(checks=(_values.check_sni,)), set=True),
        sources=Array(_ip_port(), set=True),
        destinations=Array(_ip_port(), set=True),
        service=Foreign("services", on_delete="restrict"),
    ),
    checks=(_rules.route_protocol_groups, _rules.route_matching_fields),
)


def _healthchecks() -> Record:
    active = Record({
        "type": String(default="http", one_of=("tcp", "http", "https", "grpc", "grpcs")),
        "timeout": Number(default=1, between=(0, 65535)),
        "concurrency": Integer(default=10, between=(1, 2**31 - 1)),
        "http_path": String(default="/", checks=(_values.check_path,)),
        "https_sni": String(),
        "https_verify_certificate": Boolean(default=True),
        "headers": Map(String(), Array(String())),
        "healthy": Record({"interval": Number(default=0, between=(0, 65535)),
                           "http_statuses": _statuses([200, 302]), "successes": _counter()}),
        "unhealthy": Record({"interval": Number(default=0, between=(0, 65535)),
                             "http_statuses": _statuses([429, 404, 500, 501, 502, 503, 504, 505]),
                             "tcp_failures": _counter(), "timeouts": _counter(), "http_failures": _counter()}),
    })
    passive = Record({
        "type": String(default="http", one_of=("tcp", "http", "https", "grpc", "grpcs")),
        "healthy": Record({"http_statuses": _statuses([200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                                       300, 301, 302, 303, 304, 305, 306, 307, 308]),
                           "successes": _counter()}),
        "unhealthy": Record({"http_statuses": _statuses([429, 500, 503]), "tcp_failures": _counter(),
                             "timeouts": _counter(), "http_failures": _counter()}),
    })
    return Record({"active": active, "passive": passive, "threshold": Number(default=0, between=(0, 100))})


HASH_ON = ("none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture")

UPSTREAMS = Entity(
    name="upstreams", admin_path="upstreams", endpoint_key="name", natural_key=("name",),
    description="A virtual hostname that balances over targets.",
    fields=_common(
        name=String(required=True, unique=True, checks=(_values.check_upstream_name,)),
        algorithm=String(default="round-robin", one_of=("consistent-hashing", "least-connections", "round-robin", "latency")),
        hash_on=String(default="none", one_of=HASH_ON),
        hash_fallback=String(default="none", one_of=HASH_ON),
        hash_on_header=String(), hash_fallback_header=String(),
        hash_on_cookie=String(), hash_on_cookie_path=String(default="/", checks=(_values.check_path,)),
        hash_on_query_arg=String(), hash_fallback_query_arg=String(),
        hash_on_uri_capture=String(), hash_fallback_uri_capture=String(),
        slots=Integer(default=10000, between=(10, 2**16)),
        healthchecks=_healthchecks(),
        host_header=String(checks=(_values.check_host,)),
        client_certificate=Foreign("certificates"),
        use_srv_name=Boolean(default=False),
    ),
    checks=(_rules.upstream_hashing,),
)

TARGETS = Entity(
    name="targets", admin_path="targets", endpoint_key="target", natural_key=("upstream", "target"), cache_key=("upstream", "target"),
    description="A host:port an upstream balances to.",
    fields=_common(
        upstream=Foreign("upstreams", on_delete="cascade", required=True),
        target=String(required=True, checks=(_values.check_target,)),
        weight=Integer(default=100, between=(0, 65535)),
    ),
    checks=(_rules.target_normalize,),
)

CONSUMERS = Entity(
    name="consumers", admin_path="consumers", endpoint_key="username", natural_key=("username", "custom_id"),
    description="A user or application of the API.",
    fields=_common(username=String(unique=True), custom_id=String(unique=True)),
    checks=(_rules.consumer_identity,),
)

CERTIFICATES = Entity(
    name="certificates", admin_path="certificates", natural_key=("cert",),
    description="A TLS certificate and its key (PEM), optionally an alternate pair.",
    fields=_common(
        cert=String(required=True, checks=(_values.check_cert,)),
        key=String(required=True, checks=(_values.check_key,)),
        cert_alt=String(checks=(_values.check_cert,)),
        key_alt=String(checks=(_values.check_key,)),
    ),
    checks=(_rules.certificate_pair,),
    companions={"snis": Companion("snis", "certificate", "name")},
)

SNIS = Entity(
    name="snis", admin_path="snis", endpoint_key="name", natural_key=("name",),
    description="A server name served with a certificate.",
    fields=_common(
        name=String(required=True, unique=True, checks=(_values.check_sni,)),
        certificate=Foreign("certificates", on_delete="cascade", required=True),
    ),
)

CA_CERTIFICATES = Entity(
    name="ca_certificates", admin_path="ca_certificates", natural_key=("cert",),
    description="A trusted CA certificate (PEM).",
    fields=_common(cert=String(required=True, checks=(_values.check_cert,)), cert_digest=String(unique=True)),
    checks=(_rules.ca_certificate,),
)


CONSUMER_GROUPS = Entity(
    name="consumer_groups", admin_path="consumer_groups", endpoint_key="name", natural_key=("name",),
    description="A named group of consumers; plugins scoped to it apply to its members (Kong Enterprise's consumer groups).",
    fields=_common(name=String(required=True, unique=True, checks=(_name_check,))),
)

# Kong's consumer_group_consumers: a membership, written through /consumer_groups/{g}/consumers and
# /consumers/{c}/consumer_groups (Kong generates no Admin API of its own for it, nor do we).
CONSUMER_GROUP_CONSUMERS = Entity(
    name="consumer_group_consumers", admin_path="consumer_group_consumers", natural_key=("consumer_group", "consumer"),
    cache_key=("consumer_group", "consumer"), admin_api=False,
    description="A consumer's membership of a consumer group.",
    fields=_common(
        consumer_group=Foreign("consumer_groups", on_delete="cascade", required=True),
        consumer=Foreign("consumers", on_delete="cascade", required=True),
    ),
)


def _credential(**fields: Field) -> dict[str, Field]:
    return _common(consumer=Foreign("consumers", on_delete="cascade", required=True), **fields)


KEYAUTH_CREDENTIALS = Entity(
    name="keyauth_credentials", admin_path="key-auths", nested_path="key-auth", endpoint_key="key",
    natural_key=("key",),
    description="An API key of a consumer (key-auth plugin).",
    fields=_credential(key=String(unique=True, auto="uuid_hex"), ttl=Integer(between=(0, 100000000))),
)

BASICAUTH_CREDENTIALS = Entity(
    name="basicauth_credentials", admin_path="basic-auths", nested_path="basic-auth", endpoint_key="username",
    natural_key=("username",),
    description="A username and password of a consumer (basic-auth plugin); the password is stored hashed.",
    fields=_credential(username=String(required=True, unique=True), password=String(required=True)),
    checks=(_rules.basicauth_password,),
)

JWT_SECRETS = Entity(
    name="jwt_secrets", admin_path="jwts", nested_path="jwt", endpoint_key="key", natural_key=("key",),
    description="A JWT issuer key and secret of a consumer (jwt plugin).",
    fields=_credential(
        key=String(unique=True, auto="uuid_hex"),
        secret=String(auto="uuid_hex"),
        rsa_public_key=String(),
        algorithm=String(default="HS256", one_of=("HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                                                  "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA")),
    ),
    checks=(_rules.jwt_rsa_key,),
)

HMACAUTH_CREDENTIALS = Entity(
    name="hmacauth_credentials", admin_path="hmac-auths", nested_path="hmac-auth", endpoint_key="username",
    natural_key=("username",),
    description="A username and HMAC secret of a consumer (hmac-auth plugin).",
    fields=_credential(username=String(required=True, unique=True), secret=String(auto="uuid_hex")),
)

OAUTH2_CREDENTIALS = Entity(
    name="oauth2_credentials", admin_path="oauth2", nested_path="oauth2", endpoint_key="client_id",
    natural_key=("client_id",), cache_key=("client_id",),
    description="An OAuth 2.0 application of a consumer (oauth2 plugin); `hash_secret` stores the secret hashed.",
    fields=_credential(
        name=String(required=True),
        client_id=String(unique=True, auto="uuid_hex"),
        client_secret=String(auto="uuid_hex"),
        hash_secret=Boolean(required=True, default=False),
        redirect_uris=Array(String(checks=(_values.check_redirect_uri,))),
        client_type=String(required=True, default="confidential", one_of=("confidential", "public")),
    ),
    checks=(_rules.oauth2_client_secret,),
)

OAUTH2_TOKENS = Entity(
    name="oauth2_tokens", admin_path="oauth2_tokens", endpoint_key="access_token",
    natural_key=("access_token",), cache_key=("access_token",), ttl=True,
    description="An OAuth 2.0 access token (oauth2 plugin); the proxy's /oauth2/token issues them too.",
    fields=_common(
        service=Foreign("services", on_delete="cascade"),
        credential=Foreign("oauth2_credentials", on_delete="cascade", required=True),
        token_type=String(required=True, default="bearer", one_of=("bearer",)),
        expires_in=Integer(required=True),
        access_token=String(unique=True, auto="uuid_hex"),
        refresh_token=String(unique=True),
        authenticated_userid=String(),
        scope=String(),
    ),
)

ACLS = Entity(
    name="acls", admin_path="acls", nested_path="acls", endpoint_key="group", natural_key=("consumer", "group"),
    cache_key=("consumer", "group"),
    description="A group a consumer belongs to (acl plugin).",
    fields=_credential(group=String(required=True)),
)

PLUGINS = Entity(
    name="plugins", admin_path="plugins", endpoint_key="instance_name",
    natural_key=("name", "route", "service", "consumer", "consumer_group", "instance_name"),
    cache_key=("name", "route", "service", "consumer", "consumer_group"),
    description="A plugin instance: global, or scoped to a route, service and/or consumer or consumer group.",
    fields=_common(
        name=String(required=True),
        instance_name=String(unique=True, checks=(_name_check,)),
        config=Json(default={}),
        enabled=Boolean(required=True, default=True),
        protocols=Array(String(one_of=PROTOCOLS), set=True, required=True, default=["grpc", "grpcs", "http", "https"]),
        route=Foreign("routes", on_delete="cascade"),
        service=Foreign("services", on_delete="cascade"),
        consumer=Foreign("consumers", on_delete="cascade"),
        consumer_group=Foreign("consumer_groups", on_delete="cascade"),
    ),
    checks=(_rules.plugin_config,),
)

def _vault_prefix(value: str) -> str | None:
    # Kong: the prefix is the host part of `{vault://<prefix>/...}`, and no bundled vault's name
    if not re.match(r"^[a-z][a-z\d-]*[a-z\d]$", value):
        return f"invalid value: {value}"
    if value in _vaults.BUNDLED_VAULTS:
        return "must not be one of: " + ", ".join(_vaults.BUNDLED_VAULTS)
    return None


VAULTS = Entity(
    name="vaults", admin_path="vaults", endpoint_key="prefix", natural_key=("prefix",),
    description="A secret store that `{vault://<prefix>/<name>}` references read (Kong's `env` vault).",
    fields=_common(
        prefix=String(required=True, unique=True, checks=(_vault_prefix,)),
        name=String(required=True),
        description=String(),
        config=Json(default={}),
    ),
    checks=(_rules.vault_config,),
)

ENTITIES: dict[str, Entity] = {e.name: e for e in (
    VAULTS, CERTIFICATES, CA_CERTIFICATES, SNIS, SERVICES, ROUTES, UPSTREAMS, TARGETS, CONSUMERS,
    CONSUMER_GROUPS, CONSUMER_GROUP_CONSUMERS,
    KEYAUTH_CREDENTIALS, BASICAUTH_CREDENTIALS, JWT_SECRETS, HMACAUTH_CREDENTIALS,
    OAUTH2_CREDENTIALS, OAUTH2_TOKENS, ACLS, PLUGINS,
)}
