"""Zones (Consul's datacenters): config entries and the zone's name.

Pure modules: `_decode` (HCL/JSON/YAML input -> canonical entry), `_validate` (Consul's rules and
messages), `_render` (Consul's JSON output), `_filter` (subset filters: parsed and evaluated); `_api` serves them
on the Admin API (`/v1/config...`, `/zones`), stored by `meshway.store._config_entries`.
Mesh gateways and federation: `_sni` (Consul's names), `_resolve` (where a call goes), `_gateway`
(a gateway's SNI passthrough routes), `_catalog` (what a zone knows, from its snapshot), `_gwapi`
(registration and exchange on the Admin API), `_gwrun` (`meshway connect envoy -mesh-gateway`),
`_federation` (the WAN exchange loop), `_dpview` (a data plane's calls to other zones),
`_intentions` (`service-intentions` as rules of the mesh's permission engine).
"""
from __future__ import annotations

from typing import Any

from ._decode import DecodeError, decode_entry, format_duration, parse_duration, parse_text
from ._render import dumps, to_consul
from ._schema import KINDS
from ._validate import EntryError, normalize, validate


def check_entry(raw: Any) -> dict[str, Any]:
    """A raw map (as written, any key spelling) -> the normalised, valid entry.
    DecodeError when it is not an entry of a known kind; EntryError when Consul would refuse it."""
    entry = normalize(decode_entry(raw))
    validate(entry)
    return entry


class _Tasks:
    def __init__(self, *parts: Any) -> None:
        self.parts = [p for p in parts if p is not None]

    async def stop(self) -> None:
        for part in self.parts:
            await part.stop()


def start_zone_tasks(settings: Any, store: Any) -> Any:
    """A control plane's zone tasks: its gateways' TTL checks (`_health`) and, with
    `retry_join_wan`, the WAN exchange; `.stop()` ends them."""
    from ._health import GatewayHealth

    health = GatewayHealth(store)
    health.start()
    return _Tasks(health, start_federation(settings, store) if settings.retry_join_wan else None)


def start_federation(settings: Any, store: Any) -> Any:
    """Start the WAN exchange loop of a control plane (`retry_join_wan`); `.stop()` ends it."""
    from ._catalog import summary
    from ._federation import Federation

    federation = Federation(settings, store, lambda: summary(store.export_snapshot(), settings))
    federation.start()
    return federation


__all__ = ["KINDS", "DecodeError", "EntryError", "check_entry", "decode_entry", "dumps", "format_duration",
           "normalize", "parse_duration", "start_federation", "start_zone_tasks", "parse_text", "to_consul", "validate"]
