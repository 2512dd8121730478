"""Consul's SNI names for mesh traffic between zones (`agent/connect/sni.go`).

A sidecar calling a service in another zone sends, in its TLS ClientHello, the name
`[<subset>.]<service>.<namespace>.<datacenter>.internal.<trust-domain>`; mesh gateways route the
connection on that name alone, without decrypting (the datacenter label picks the next hop).
Non-default partitions use `<service>.<namespace>.<partition>.<datacenter>.internal-v1.<trust-domain>`.
A gateway's own zone is `<datacenter>.internal.<trust-domain>`.
"""
from __future__ import annotations

import dataclasses

DEFAULT = "default"


@dataclasses.dataclass(frozen=True)
class ServiceName:
    """What a gateway learns from an SNI name."""

    service: str
    namespace: str
    datacenter: str
    subset: str = ""
    partition: str = DEFAULT


def service_sni(service: str, datacenter: str, trust_domain: str, *, subset: str = "", namespace: str = "",
                partition: str = "") -> str:
    namespace, partition = namespace or DEFAULT, partition or DEFAULT
    head = [subset] if subset else []
    if partition == DEFAULT:
        return ".".join([*head, service, namespace, datacenter, "internal", trust_domain])
    return ".".join([*head, service, namespace, partition, datacenter, "internal-v1", trust_domain])


def datacenter_sni(datacenter: str, trust_domain: str) -> str:
    return f"{datacenter}.internal.{trust_domain}"


def parse_sni(sni: str, trust_domain: str) -> ServiceName | None:
    """The service an SNI name asks for, or None when it is not a mesh name of this trust domain."""
    sni = sni.lower().rstrip(".")
    for marker, default_partition in ((".internal.", True), (".internal-v1.", False)):
        suffix = marker + trust_domain.lower()
        if not sni.endswith(suffix):
            continue
        labels = sni[: -len(suffix)].split(".")
        if any(not label for label in labels):
            return None
        if default_partition and len(labels) in (3, 4):
            subset = labels[0] if len(labels) == 4 else ""
            service, namespace, datacenter = labels[-3:]
            return ServiceName(service, namespace, datacenter, subset)
        if not default_partition and len(labels) in (4, 5):
            subset = labels[0] if len(labels) == 5 else ""
            service, namespace, partition, datacenter = labels[-4:]
            return ServiceName(service, namespace, datacenter, subset, partition)
    return None


def sni_datacenter(sni: str, trust_domain: str) -> str | None:
    """The datacenter label of a service or datacenter SNI name: what a gateway routes on."""
    found = parse_sni(sni, trust_domain)
    if found is not None:
        return found.datacenter
    suffix = f".internal.{trust_domain.lower()}"
    head = sni.lower().rstrip(".")
    if head.endswith(suffix) and "." not in head[: -len(suffix)] and head[: -len(suffix)]:
        return head[: -len(suffix)]
    return None
