"""The last guard of "one bad object never blocks the rest": the snapshot is checked with the
node's own declarative schema before it is pushed, and each error is traced back, through the
entity's `k8s-kind:`/`k8s-namespace:`/`k8s-name:` tags, to the Kubernetes object it came from.
The translation then runs again without those objects (KIC instead pushes, lets the node refuse
everything, and maps the node's flattened errors back with the same tags).
"""
from __future__ import annotations

import re

from meshway.model import parse_declarative
from meshway.model._errors import DeclarativeError

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def offenders(config: dict) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(kind, namespace, name) -> (field, reason) for each object whose entity the schema refuses."""
    try:
        parse_declarative(config)
    except DeclarativeError as e:
        found: dict = {}
        for path, reason in e.errors.items():
            owner, field_ = _owner(config, path)
            if owner is not None:
                found.setdefault(owner, (field_, reason))
        return found or {("", "", ""): (path, reason)}  # nothing to leave out: say what failed
    return {}


def _owner(config: dict, path: str) -> tuple[tuple[str, str, str] | None, str]:
    """The innermost tagged entity on the path, and the rest of the path (the field)."""
    current, owner, rest = config, None, path
    tokens = [(m.group(0), m.group(1) if m.group(1) is not None else int(m.group(2))) for m in _TOKEN.finditer(path)]
    consumed = ""
    for text, token in tokens:
        try:
            current = current[token]
        except (KeyError, IndexError, TypeError):
            break
        consumed += text if text.startswith("[") else ("." if consumed else "") + text
        if isinstance(current, dict) and current.get("tags"):
            identity = _identity(current["tags"])
            if identity:
                owner, rest = identity, path[len(consumed):].lstrip(".")
    return owner, rest or path


def _identity(tags: list[str]) -> tuple[str, str, str] | None:
    values = dict(t.split(":", 1) for t in tags if isinstance(t, str) and t.startswith("k8s-") and ":" in t)
    if "k8s-kind" not in values or "k8s-name" not in values:
        return None
    return values["k8s-kind"], values.get("k8s-namespace", ""), values["k8s-name"]
