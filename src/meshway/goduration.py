"""Go duration strings (`24h`, `1h30m`, `90s`), as Kuma's flags and settings take them.

Kept apart from the mesh so that reading settings (which parse one) does not import the mesh
and its crypto: an idle proxy worker stays light (tests/unit/plugins/test_registry_lazy.py).
"""
from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string; ValueError naming it otherwise."""
    text = (text or "").strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m[1]) * _UNITS[m[2]]
        pos = m.end()
    if not text or pos != len(text) or total <= 0:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 24h, 1h30m, 90s)")
    return total
