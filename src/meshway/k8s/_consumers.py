"""KongConsumer and its credentials from Secrets, as KIC's `kongstate.FillConsumersAndCredentials`;
KongConsumerGroup as its `FillConsumerGroups` (the memberships come from KongConsumer.consumerGroups).

- A KongConsumer needs `username` or `custom_id`, and is ours when its `kubernetes.io/ingress.class`
  annotation names our class (or is absent and our IngressClass is the cluster default), as KIC.
- Each name in `credentials` is a Secret of the consumer's namespace labelled
  `konghq.com/credential: key-auth|basic-auth|jwt|hmac-auth|oauth2|acl` (KIC's legacy type names
  `keyauth_credential`, `basicauth_credential`, `jwt_secret`, `hmacauth_credential` too). Its data
  keys are the credential's fields; as KIC reads them, `ttl` is an integer, oauth2's `redirect_uris`
  a comma-separated list and `hash_secret` a boolean.
- A credential that fails is left out and named on the consumer; the consumer stays (as KIC).
- Two consumers claiming the same key-auth key, basic-auth or hmac-auth username, jwt key or oauth2
  client_id: KIC drops both;
  we keep the first (by namespace/name) and leave out the later one, so that one bad object
  does not take a working consumer down with it.
"""
from __future__ import annotations

import base64
import binascii
import uuid

from meshway.k8s._annotations import Bad

CREDENTIAL_LABEL = "konghq.com/credential"
# credential type -> (entity collection, fields read from the Secret, field unique across consumers)
TYPES = {
    "key-auth": ("keyauth_credentials", ("key", "ttl"), "key"),
    "basic-auth": ("basicauth_credentials", ("username", "password"), "username"),
    "jwt": ("jwt_secrets", ("key", "secret", "rsa_public_key", "algorithm"), "key"),
    "hmac-auth": ("hmacauth_credentials", ("username", "secret"), "username"),
    "oauth2": ("oauth2_credentials", ("name", "client_id", "client_secret", "redirect_uris", "hash_secret",
                                      "client_type"), "client_id"),
    "acl": ("acls", ("group",), None),
}
LEGACY = {"keyauth_credential": "key-auth", "basicauth_credential": "basic-auth", "jwt_secret": "jwt",
          "hmacauth_credential": "hmac-auth"}
KIC_ONLY = {"mtls-auth"}  # KIC has it, meshway has not


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def consumer_id(obj: dict) -> str:
    """A stable id, so plugins can point at a consumer known only by its custom_id."""
    meta = _meta(obj)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"k8s:KongConsumer:{meta.get('namespace')}/{meta.get('name')}"))


def consumer_entity(obj: dict, tags: list[str]) -> dict:
    if not obj.get("username") and not obj.get("custom_id"):
        raise Bad("username", "no username or custom_id specified")
    entity = {"id": consumer_id(obj), "tags": tags}
    for field_ in ("username", "custom_id"):
        if obj.get(field_):
            entity[field_] = obj[field_]
    return entity


def consumer_group(obj: dict, taken: dict, plugins, tags_of) -> tuple[dict | None, list, tuple | None]:
    """KongConsumerGroup (v1beta1, KIC's FillConsumerGroups): a consumer group named as the object, its
    `konghq.com/plugins` scoped to the group. Returns (group, plugin bindings, problem (field, reason)).
    Kong's group names are global while the objects are namespaced: a name already taken by another
    namespace's KongConsumerGroup leaves this one out (KIC would push both and the node refuse the push)."""
    meta = _meta(obj)
    name = meta.get("name")
    for (ns, other), group in taken.items():
        if other == name:
            return None, [], ("metadata.name", f"consumer group {name!r} is already KongConsumerGroup {ns}/{other}")
    try:
        bound = plugins.for_referrer(obj, "KongConsumerGroup")
    except Bad as bad:
        return None, [], (bad.field, bad.reason)
    from meshway.model._rules import NO_CONSUMER_GROUP

    for _, template in bound:
        if template.get("name") in NO_CONSUMER_GROUP:
            return None, [], ("metadata.annotations[konghq.com/plugins]",
                              f"plugin {template['name']!r} cannot be scoped to a consumer group (as in Kong)")
    group = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"k8s:KongConsumerGroup:{meta.get('namespace')}/{name}")),
             "name": name, "tags": tags_of(obj, "KongConsumerGroup")}
    return group, bound, None


def credentials(obj: dict, secrets: dict, tags_of, error) -> list[tuple[str, dict, tuple | None]]:
    """(collection, credential, uniqueness key) for each usable credential; the others are named
    with `error(field, reason)`."""
    ns = _meta(obj).get("namespace") or ""
    out = []
    for i, name in enumerate(obj.get("credentials") or []):
        where = f"credentials[{i}]"
        try:
            out.append(_credential(secrets.get((ns, name)), ns, name, tags_of))
        except Bad as bad:
            error(where, f"credential {name!r} failure: {bad.reason}")
    return out


def _credential(secret: dict | None, ns: str, name: str, tags_of) -> tuple[str, dict, tuple | None]:
    if secret is None:
        raise Bad("secret", f"Secret {ns}/{name} not found")
    kind = (_meta(secret).get("labels") or {}).get(CREDENTIAL_LABEL)
    if not kind:
        raise Bad("secret", f"Secret {ns}/{name} used as credential, but lacks {CREDENTIAL_LABEL} label")
    kind = LEGACY.get(kind, kind)
    if kind not in TYPES:
        known = "not supported by meshway" if kind in KIC_ONLY else "unsupported credential type"
        raise Bad("secret", f"failed to provision credential: {known}: {kind!r}")
    collection, fields, unique = TYPES[kind]
    data = _decoded(secret, ns, name)
    credential = {k: data[k] for k in fields if k in data}
    _typed(credential, ns, name)
    return collection, {**credential, "tags": tags_of(secret, "Secret")}, \
        (collection, credential.get(unique)) if unique else None


def _typed(credential: dict, ns: str, name: str) -> None:
    """The Secret's strings to the types the credential's fields take (KIC's conversions; where KIC
    logs and drops or defaults a bad value, the credential is left out naming the field)."""
    if "ttl" in credential:
        try:
            credential["ttl"] = int(credential["ttl"])
        except ValueError:
            raise Bad("secret", f"Secret {ns}/{name}: ttl is not an integer") from None
    if "redirect_uris" in credential:
        credential["redirect_uris"] = [u.strip() for u in credential["redirect_uris"].split(",") if u.strip()]
    if "hash_secret" in credential:
        value = credential["hash_secret"].strip().lower()
        if value not in ("true", "false"):
            raise Bad("secret", f"Secret {ns}/{name}: hash_secret is not true or false") from None
        credential["hash_secret"] = value == "true"


def _decoded(secret: dict, ns: str, name: str) -> dict:
    out = {k: v for k, v in (secret.get("stringData") or {}).items()}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[k] = base64.b64decode(v, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Bad("secret", f"Secret {ns}/{name}: data[{k}] is not base64 text") from None
    return out
