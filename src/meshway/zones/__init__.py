"""Zones (Consul's datacenters): config entries and the zone's name.

Pure modules: `_decode` (HCL/JSON/YAML input -> canonical entry), `_validate` (Consul's rules and
messages), `_render` (Consul's JSON output), `_filter` (subset filter syntax); `_api` serves them
on the Admin API (`/v1/config...`, `/zones`), stored by `meshway.store._config_entries`.
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


__all__ = ["KINDS", "DecodeError", "EntryError", "check_entry", "decode_entry", "dumps", "format_duration",
           "normalize", "parse_duration", "parse_text", "to_consul", "validate"]
