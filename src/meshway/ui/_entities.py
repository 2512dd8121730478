"""The gateway's entities as the dashboard shows them (Kong Manager's pages and columns)."""
from __future__ import annotations

import dataclasses

from meshway.ui._forms import Field


@dataclasses.dataclass(frozen=True)
class Kind:
    """One entity page: its Admin API collection, columns and the form fields shown first."""

    path: str  # the Admin API collection, and the page's path under admin_gui_path
    title: str
    columns: tuple[str, ...]
    main: tuple[str, ...]  # inputs before the "Advanced" fold
    extra: tuple[Field, ...] = ()  # inputs the Admin API accepts besides its schema's (a service's url)
    related: tuple[tuple[str, str], ...] = ()  # (title, sub-collection) listed on the detail page

    @property
    def singular(self) -> str:
        return {"ca_certificates": "CA certificate", "snis": "SNI"}.get(self.path, self.title[:-1].lower())


CREDENTIALS = (("Key auth credentials", "key-auth"), ("Basic auth credentials", "basic-auth"),
               ("JWT credentials", "jwt"), ("ACL groups", "acls"))

KINDS: dict[str, Kind] = {k.path: k for k in (
    Kind("services", "Gateway services", ("name", "protocol", "host", "port", "path", "enabled", "tags"),
         ("name", "url", "protocol", "host", "port", "path", "enabled", "tags"),
         extra=(Field("url", "text", help="protocol://host:port/path, instead of the four fields"),),
         related=(("Routes", "routes"), ("Plugins", "plugins"))),
    Kind("routes", "Routes", ("name", "service", "protocols", "hosts", "methods", "paths", "tags"),
         ("name", "service", "protocols", "hosts", "methods", "paths", "strip_path", "tags"),
         related=(("Plugins", "plugins"),)),
    Kind("consumers", "Consumers", ("username", "custom_id", "tags"), ("username", "custom_id", "tags"),
         related=(("Plugins", "plugins"), *CREDENTIALS)),
    Kind("plugins", "Plugins", ("name", "service", "route", "consumer", "enabled", "tags"),
         ("service", "route", "consumer", "enabled", "tags")),
    Kind("upstreams", "Upstreams", ("name", "algorithm", "slots", "tags"), ("name", "algorithm", "slots", "tags"),
         related=(("Targets", "targets"),)),
    Kind("certificates", "Certificates", ("id", "snis", "tags"), ("cert", "key", "snis", "tags"),
         extra=(Field("snis", "list", help="server names it is served for (Kong's shorthand for SNI entities)"),)),
    Kind("ca_certificates", "CA certificates", ("id", "cert_digest", "tags"), ("cert", "tags")),
    Kind("snis", "SNIs", ("name", "certificate", "tags"), ("name", "certificate", "tags")),
)}


def label(entity: dict) -> str:
    """What a user calls an entity: its name, username or target, else its id."""
    for key in ("name", "username", "target", "custom_id"):
        if entity.get(key):
            return str(entity[key])
    return str(entity.get("id", ""))
