"""Merge the Prometheus text of several workers into one exposition.

Each worker counts its own requests; a scrape must see the node's totals, so samples with the
same name and labels are summed (valid for counters, gauges of counts, and histogram buckets,
sums and counts alike). The first worker's HELP/TYPE lines describe each family.

Names are kept exactly as the workers wrote them: Kong's `kong_bandwidth_bytes` is a counter
without the `_total` suffix, which a client-library parser would rename (and dashboards would
then miss). Workers render their series with labels in one fixed order, so the label text itself
identifies a series across workers.
"""
from __future__ import annotations

import re

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)\s*$")


def _fmt_value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _family_of(name: str, families: dict[str, list]) -> str:
    """The family a sample belongs to: its own name, or that less a histogram/summary suffix."""
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count", "_total", "_created"):
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return name


def merge_worker_metrics(texts: list[str]) -> str:
    # family -> [HELP/TYPE lines, {(sample name, labels): value}]; dicts keep first-seen order
    families: dict[str, list] = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = families.setdefault(parts[2], [[], {}])
                    if not any(h.split(None, 3)[1] == parts[1] for h in family[0]):
                        family[0].append(line)
                continue
            match = _SAMPLE.match(line)
            if match is None:
                continue
            name, labels, raw = match.groups()
            try:
                value = float(raw)
            except ValueError:
                continue
            samples = families.setdefault(_family_of(name, families), [[], {}])[1]
            key = (name, labels or "")
            samples[key] = samples.get(key, 0.0) + value
    lines: list[str] = []
    for head, samples in families.values():
        lines += head
        lines += [f"{name}{labels} {_fmt_value(value)}" for (name, labels), value in samples.items()]
    return "\n".join(lines) + "\n"
