"""Merge the Prometheus text of several workers into one exposition.

Each worker counts its own requests; a scrape must see the node's totals, so samples with the
same name and labels are summed (valid for counters, gauges of counts, and histogram buckets,
sums and counts alike). The first worker's HELP/TYPE lines describe each family.
"""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def _fmt_labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def merge_worker_metrics(texts: list[str]) -> str:
    families: dict[str, tuple[str, str, dict[tuple, float], list[tuple]]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text):
            _, _, samples, order = families.setdefault(fam.name, (fam.type, fam.documentation, {}, []))
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                if key not in samples:
                    order.append(key)
                samples[key] = samples.get(key, 0.0) + s.value
    lines: list[str] = []
    for name, (kind, doc, samples, order) in families.items():
        if kind == "counter":  # the parser drops `_total` from a counter family's name; exposition keeps it
            name += "_total"
        lines.append(f"# HELP {name} {doc}")
        lines.append(f"# TYPE {name} {kind}")
        for sample_name, labels in order:
            lines.append(f"{sample_name}{_fmt_labels(dict(labels))} {_fmt_value(samples[(sample_name, labels)])}")
    return "\n".join(lines) + "\n"
