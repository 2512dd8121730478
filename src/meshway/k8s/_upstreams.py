"""Upstream overrides from a Service's KongIngress (`konghq.com/override`, deprecated) and
KongUpstreamPolicy (`konghq.com/upstream-policy`), applied in that order as KIC's
`FillUpstreamOverrides` does, so the policy wins where both set a field.

KongIngress since KIC 3.0 only carries `upstream` (Kong's own snake_case field names); its `proxy`
and `route` sections are ignored, as KIC ignores them. KongUpstreamPolicy's spec is camelCase and
its `hashOn` is a one-of (`input`, `header`, `cookie`, `queryArg`, `uriCapture`).
"""
from __future__ import annotations

import re

from meshway.k8s._annotations import Bad

OVERRIDE = "konghq.com/override"
POLICY = "konghq.com/upstream-policy"
KONG_INGRESS_FIELDS = (
    "host_header", "algorithm", "slots", "healthchecks", "hash_on", "hash_fallback", "hash_on_header",
    "hash_fallback_header", "hash_on_cookie", "hash_on_cookie_path", "hash_on_query_arg",
    "hash_fallback_query_arg", "hash_on_uri_capture", "hash_fallback_uri_capture")
HASH_KINDS = {"header": "header", "cookie": "cookie", "queryArg": "query_arg", "uriCapture": "uri_capture"}


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def overrides(svc: dict, objects) -> dict:
    """Upstream fields the Service's KongIngress and KongUpstreamPolicy set; Bad names the annotation."""
    annotations = _meta(svc).get("annotations") or {}
    ns = _meta(svc).get("namespace") or ""
    out: dict = {}
    if annotations.get(OVERRIDE):
        kong_ingress = objects.kong_ingresses.get((ns, annotations[OVERRIDE]))
        if kong_ingress is None:
            raise Bad(f"metadata.annotations[{OVERRIDE}]", f"KongIngress {ns}/{annotations[OVERRIDE]} not found")
        upstream = kong_ingress.get("upstream") or {}
        out.update({k: upstream[k] for k in KONG_INGRESS_FIELDS if upstream.get(k) is not None})
    if annotations.get(POLICY):
        policy = objects.kong_upstream_policies.get((ns, annotations[POLICY]))
        if policy is None:
            raise Bad(f"metadata.annotations[{POLICY}]", f"KongUpstreamPolicy {ns}/{annotations[POLICY]} not found")
        try:
            out.update(from_policy(policy.get("spec") or {}))
        except Bad as bad:
            raise Bad(f"metadata.annotations[{POLICY}]",
                      f"KongUpstreamPolicy {ns}/{annotations[POLICY]}: spec.{bad.field}: {bad.reason}") from None
    return out


def from_policy(spec: dict) -> dict:
    """KIC's TranslateKongUpstreamPolicy."""
    if spec.get("stickySessions"):
        raise Bad("stickySessions", "sticky sessions are not supported by meshway")
    out: dict = {}
    for field_ in ("algorithm", "slots"):
        if spec.get(field_) is not None:
            out[field_] = spec[field_]
    for prefix, key in (("hash_on", "hashOn"), ("hash_fallback", "hashOnFallback")):
        out.update(_hash(prefix, spec.get(key), key))
    if spec.get("healthchecks") is not None:
        out["healthchecks"] = _snake(spec["healthchecks"])
    return out


def _hash(prefix: str, value: dict | None, where: str) -> dict:
    if not value:
        return {}
    if value.get("input"):
        return {prefix: value["input"]}
    for key, kind in HASH_KINDS.items():
        if value.get(key):
            out = {prefix: kind, f"{prefix}_{kind}": value[key]}
            if kind == "cookie":  # Kong has one cookie (and path) for hash_on and its fallback
                out = {prefix: kind, "hash_on_cookie": value[key]}
                if value.get("cookiePath"):
                    out["hash_on_cookie_path"] = value["cookiePath"]
            return out
    raise Bad(where, "one of input, header, cookie, queryArg, uriCapture is required")


def _snake(value):
    """camelCase keys (httpPath, httpsSni, tcpFailures) to Kong's snake_case."""
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value
