"""Upstream TLS of a Kubernetes Service, as KIC reads it:

- `konghq.com/client-cert: <secret>` on the Service: that `kubernetes.io/tls` Secret of its namespace
  becomes a certificate the Kong service presents to its upstream (`client_certificate`);
- `konghq.com/ca-certificates-secrets: a,b`: the Kong service verifies its upstream with those CA
  certificates. A CA certificate is a Secret labelled `konghq.com/ca-cert: "true"` holding `cert` (PEM)
  and `id` (a UUID, the entity's id); each becomes a `ca_certificates` entity (KIC's
  `translate_cacerts.go`; for one id used twice, the first Secret by namespace/name wins).
"""
from __future__ import annotations

import base64
import binascii
import uuid

from meshway.k8s._annotations import PREFIX, Bad

CA_LABEL = "konghq.com/ca-cert"


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def certificate_id(ns: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"k8s:Secret:{ns}/{name}"))


def ca_certificates(secrets: dict, tags_of, error) -> tuple[list[dict], dict]:
    """(ca_certificates entities, (namespace, secret name) -> id)."""
    entities, by_secret, seen = [], {}, set()
    for key in sorted(secrets):
        secret = secrets[key]
        if (_meta(secret).get("labels") or {}).get(CA_LABEL) != "true":
            continue
        try:
            data = {k: base64.b64decode(v, validate=True).decode() for k, v in (secret.get("data") or {}).items()}
        except (binascii.Error, UnicodeDecodeError):
            error("Secret", secret, "data", "not base64 text")
            continue
        try:
            ca_id = str(uuid.UUID(data.get("id", "")))
        except ValueError:
            error("Secret", secret, "data.id", "invalid secret CA certificate: 'id' must be a UUID")
            continue
        if "cert" not in data:
            error("Secret", secret, "data.cert", "invalid secret CA certificate: missing 'cert' field in data")
            continue
        if ca_id in seen:
            error("Secret", secret, "data.id", f"CA certificate id {ca_id} is already used by another Secret")
            continue
        seen.add(ca_id)
        by_secret[key] = ca_id
        entities.append({"id": ca_id, "cert": data["cert"], "tags": tags_of(secret, "Secret")})
    return entities, by_secret


def service_tls(svc: dict, ca_by_secret: dict) -> tuple[dict, str | None]:
    """(service fields, client certificate Secret name or None) from the Service's annotations."""
    annotations = _meta(svc).get("annotations") or {}
    ns = _meta(svc).get("namespace") or ""
    fields: dict = {}
    names = [n.strip() for n in (annotations.get(PREFIX + "ca-certificates-secrets") or "").split(",") if n.strip()]
    missing = [n for n in names if (ns, n) not in ca_by_secret]
    if missing:
        raise Bad(f"metadata.annotations[{PREFIX}ca-certificates-secrets]",
                  f"no CA certificate Secret (labelled {CA_LABEL}: \"true\") named {', '.join(missing)}")
    if names:
        fields["ca_certificates"] = [ca_by_secret[(ns, n)] for n in names]
    return fields, (annotations.get(PREFIX + "client-cert") or "").strip() or None
