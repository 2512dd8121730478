"""Incremental configuration pushes: a data plane gets what changed since its version (Envoy's delta xDS).

Rules:
- A snapshot is a set of named **resources**: each entity of a top-level list (named by its `id`),
  each item of a list under `mesh_resources` (by mesh, name, type) or of `config_entries` (by Kind,
  Name, ...), each key of any other object section; what has no unique identity is one resource.
  A name is a tuple (container path, *identity), a JSON array on the wire; a container's own name
  `(path,)` holds its empty shape (`[]` or `{}`), or its whole value when it is not split.
- The control plane keeps the current resources and, for the last HISTORY versions, the names
  each change touched. A data plane that announced `delta` in its hello and whose version is one
  of them gets `reconfigure_delta` (`encode_delta`): its base hash, the new hash, the resources
  added or changed (`put`) and the names removed. Any other version (it fell behind, or this control
  plane never had it, e.g. after a restart), or a delta larger than half the snapshot, gets the
  full snapshot: the resync. A delta is computed and compressed once per base version and shared
  by every data plane on that version.
- The data plane applies a delta only onto the version it names as base; otherwise it asks for a
  full snapshot (`resync`) and keeps serving what it has.
- Both sides build the snapshot from its resources in one canonical order (lists sorted by
  identity), so one version is the same document whether it came whole or in pieces. The data
  plane keeps each resource as JSON text and parses the assembled document once: the workers
  get fresh objects, never ones shared with the next version.
"""
from __future__ import annotations

import json
import zlib
from typing import Any

HISTORY = 16  # versions whose changes the control plane remembers
NESTED = ("mesh_resources",)  # sections whose keys are containers themselves
# what identifies an item of a list without an `id`, in sort order (Kuma resources, Consul config entries)
IDENTITY_KEYS = ("mesh", "name", "type", "Kind", "Name", "Namespace", "Partition")

Name = tuple[str, ...]


def _identity(item: Any) -> tuple[str, ...] | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("id"), str):
        return (item["id"],)
    ident = tuple(item[k] for k in IDENTITY_KEYS if isinstance(item.get(k), str))
    return ident or None


def _container(out: dict[Name, Any], path: str, value: Any) -> None:
    if isinstance(value, list) and value:
        idents = [_identity(item) for item in value]
        if None not in idents and len(set(idents)) == len(idents):
            out[(path,)] = []
            for ident, item in zip(idents, value):
                out[(path, *ident)] = item
            return
    elif isinstance(value, dict) and value:
        out[(path,)] = {}
        for key, item in value.items():
            out[(path, key)] = item
        return
    out[(path,)] = value


def resources(snapshot: dict[str, Any]) -> dict[Name, Any]:
    """The snapshot as named resources (see the module's rules); values are shared, not copied."""
    out: dict[Name, Any] = {}
    for key, value in snapshot.items():
        if key in NESTED and isinstance(value, dict):
            out[(key,)] = {}
            for sub, part in value.items():
                _container(out, f"{key}.{sub}", part)
        else:
            _container(out, key, value)
    return out


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def texts(named: dict[Name, Any]) -> dict[Name, str]:
    return {name: _text(value) for name, value in named.items()}


def assemble(named_texts: dict[Name, str]) -> str:
    """The JSON text of the snapshot these resources make, in canonical order."""
    shape: dict[str, str] = {}
    members: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for name, text in named_texts.items():
        if len(name) == 1:
            shape[name[0]] = text
        else:
            members.setdefault(name[0], []).append((name[1:], text))

    def render(path: str) -> str:
        text = shape[path]
        items = sorted(members.get(path, ()))
        if text == "[]":
            return "[" + ",".join(t for _, t in items) + "]"
        if text == "{}":
            children = [(ident[0], t) for ident, t in items]
            children += [(p.split(".", 1)[1], render(p)) for p in sorted(shape) if p.startswith(path + ".")]
            return "{" + ",".join(f"{_text(k)}:{t}" for k, t in sorted(children)) + "}"
        return text

    return "{" + ",".join(f"{_text(p)}:{render(p)}" for p in sorted(shape) if "." not in p) + "}"


class Versions:
    """The control plane's side: current resources, what the last HISTORY changes touched, and the
    delta frames already made for this version (one per base version). Immutable once made: a new
    version is a new object (`next`), built off the event loop and swapped in on it."""

    def __init__(self, config_hash: str | None = None, named: dict[Name, Any] | None = None,
                 steps: tuple[tuple[str, frozenset[Name]], ...] = ()) -> None:
        self.hash = config_hash
        self.named = named or {}
        self._steps = steps  # (version before the change, names it touched), oldest first
        self._frames: dict[str, tuple[bytes, int, int] | None] = {}

    def next(self, snapshot: dict[str, Any], config_hash: str) -> "Versions":
        named = resources(snapshot)
        if self.hash is None:
            return Versions(config_hash, named)
        old = self.named
        touched = frozenset([n for n, v in named.items() if n not in old or old[n] != v]
                            + [n for n in old if n not in named])
        return Versions(config_hash, named, (*self._steps, (self.hash, touched))[-HISTORY:])

    def knows(self, base: str) -> bool:
        return any(before == base for before, _ in self._steps)

    def delta(self, base: str) -> tuple[dict[Name, Any], list[Name]] | None:
        """(put, removed) from `base` to this version; None when `base` is not one of the last
        HISTORY versions or the delta would be over half the snapshot (a full one is then better)."""
        touched: set[Name] = set()
        found = False
        for before, names in self._steps:
            found = found or before == base
            if found:
                touched |= names
        if not found or len(touched) > max(len(self.named) // 2, 1):
            return None
        put = {n: self.named[n] for n in touched if n in self.named}
        return put, sorted(n for n in touched if n not in self.named)

    def frame(self, base: str) -> tuple[bytes, int, int] | None:
        """(delta frame, resources put, names removed) from `base`, made once per base; None: send the full one."""
        if base not in self._frames:
            delta = self.delta(base)
            self._frames[base] = None if delta is None else (
                encode_delta(self.hash, base, *delta), len(delta[0]), len(delta[1]))
        return self._frames[base]


def encode_delta(config_hash: str, base: str, put: dict[Name, Any], removed: list[Name]) -> bytes:
    body = {"config_hash": config_hash, "type": "reconfigure_delta", "base_hash": base,
            "put": [[list(n), v] for n, v in sorted(put.items())], "removed": [list(n) for n in removed]}
    return zlib.compress(_text(body).encode(), 6)


def _name(value: Any) -> Name:
    if not isinstance(value, list) or not value or not all(isinstance(p, str) for p in value):
        raise ValueError(f"resource name must be a non-empty array of strings, got {str(value)[:80]}")
    return tuple(value)


def check_delta(body: dict[str, Any]) -> tuple[dict[Name, Any], list[Name]]:
    """(put, removed) of a decoded `reconfigure_delta`; ValueError naming what is wrong."""
    if not isinstance(body.get("base_hash"), str):
        raise ValueError("reconfigure_delta needs a string base_hash")
    if not isinstance(body.get("put"), list) or not isinstance(body.get("removed"), list):
        raise ValueError("reconfigure_delta needs put and removed arrays")
    put = {}
    for entry in body["put"]:
        if not isinstance(entry, list) or len(entry) != 2:
            raise ValueError("reconfigure_delta: each put entry is [name, value]")
        put[_name(entry[0])] = entry[1]
    return put, [_name(n) for n in body["removed"]]


class Applied:
    """The data plane's side: the resources (JSON text) of the version it runs."""

    def __init__(self) -> None:
        self.hash: str | None = None
        self.named: dict[Name, str] | None = None

    def delta(self, base: str, put: dict[Name, Any], removed: list[Name]) -> dict[Name, str]:
        """The resources after this delta; LookupError when we do not run `base`."""
        if self.named is None or base != self.hash:
            raise LookupError(f"this data plane runs {self.hash or 'nothing'}, not {base}")
        named = dict(self.named)
        for name in removed:
            named.pop(name, None)
        named.update(texts(put))
        return named

    def commit(self, config_hash: str, named: dict[Name, str]) -> None:
        self.hash, self.named = config_hash, named
