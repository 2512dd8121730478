"""`POST /config` on a node with a database: the atomic equivalent of decK's `--select-tag` sync.

The document names its tags in `_info.select_tags`, where decK writes them in its files (a decK
user's file works unchanged, and KIC's tag `managed-by-ingress-controller` fits there). The node:
1. validates the whole document as DB-less would (400 naming every bad path, nothing changed);
2. requires every entity of the document to carry every select tag (400 naming the entity's path;
   decK adds the tags silently, but a file that does not carry them would be refused by its next
   sync's filter, so we say so at once);
3. in one transaction deletes the entities carrying every select tag and inserts the document's,
   leaving every other entity as it was.
References resolve inside the document, and, with decK's `_info.default_lookup_tags` (`consumers`,
`consumer_groups`, `services`, `routes`: each a list of tags), also to the existing entities of that
collection carrying every one of those tags: a tagged plugin may name a consumer another file manages
(decK's lookup). Those entities are only looked up, never written; one that also carries the select tags
is managed by this document and is not looked up (it must be in the document). Without lookup tags a
tagged route cannot name a user's untagged service (400), so a later replace never has to guess what it
owns. The looked-up entity must still exist when the replace commits (else 400 foreign key violation).
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from meshway.admin._context import AdminContext
from meshway.admin._http import JSONResponse
from meshway.model import ENTITIES, DeclarativeError, parse_declarative


async def replace_tagged(ctx: AdminContext, document: dict) -> Response:
    tags = _select_tags(document)
    if "mesh_resources" in document:  # not tagged entities: refused rather than silently left out
        raise DeclarativeError({"mesh_resources": "not allowed with _info.select_tags (use meshway apply)"})
    lookup = _lookup_tags(document)
    doc = {k: v for k, v in document.items() if k != "_info"}
    found = await ctx.call(_looked_up, ctx.store, lookup, set(tags)) if lookup else {}
    snapshot = parse_declarative(_with_looked_up(doc, found))
    for name, rows in found.items():  # reference targets only: not written by this replace
        ids = {r["id"] for r in rows}
        snapshot[name] = [r for r in snapshot[name] if r["id"] not in ids]
    missing = dict(_untagged_paths(doc, set(tags)))
    if missing:
        raise DeclarativeError({path: f"must carry the select tags {sorted(tags)}" for path in missing})
    async with ctx.config_lock:
        await ctx.call(ctx.store.replace_tagged, snapshot, tags)
    return JSONResponse(snapshot, status_code=201)


def _select_tags(document: dict) -> list[str]:
    tags = document["_info"].get("select_tags")
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
        raise DeclarativeError({"_info.select_tags": "expected a non-empty array of strings"})
    return tags


LOOKUP_COLLECTIONS = ("consumers", "consumer_groups", "services", "routes")  # decK's default_lookup_tags keys


def _lookup_tags(document: dict) -> dict[str, list[str]]:
    value = document["_info"].get("default_lookup_tags")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DeclarativeError({"_info.default_lookup_tags": "expected a record"})
    errors = {}
    for key, tags in value.items():
        if key not in LOOKUP_COLLECTIONS:
            errors[f"_info.default_lookup_tags.{key}"] = "unknown field (expected one of: " + ", ".join(LOOKUP_COLLECTIONS) + ")"
        elif not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
            errors[f"_info.default_lookup_tags.{key}"] = "expected a non-empty array of strings"  # decK: "no global tags"
    if errors:
        raise DeclarativeError(errors)
    return value


def _looked_up(store: Any, lookup: dict[str, list[str]], select: set[str]) -> dict[str, list[dict]]:
    """The stored entities carrying every lookup tag of their collection (and not every select tag)."""
    found: dict[str, list[dict]] = {}
    for name, tags in lookup.items():
        wanted = set(tags)
        rows, offset = [], None
        for _ in range(100_000):  # bounded: pages of 1000
            page, offset = store.list(name, size=1000, offset=offset)
            rows += [r for r in page if wanted <= set(r.get("tags") or []) and not select <= set(r.get("tags") or [])]
            if not offset:
                break
        found[name] = rows
    return found


def _with_looked_up(doc: dict, found: dict[str, list[dict]]) -> dict:
    """The document with the looked-up entities added as reference targets (their own references left
    out: they are not validated against the document, only named by it)."""
    if not any(found.values()):
        return doc
    out = dict(doc)
    for name, rows in found.items():
        foreign = ENTITIES[name].foreign_fields
        extra = [{k: v for k, v in r.items() if k not in foreign} for r in rows]
        current = out.get(name)
        out[name] = (list(current) if isinstance(current, list) else []) + extra
    return out


def _untagged_paths(value: Any, tags: set[str], path: str = "") -> Any:
    """(path, True) for every entity record in the raw document that lacks one of `tags`."""
    for name in ENTITIES:
        records = value.get(name) if isinstance(value, dict) else None
        if not isinstance(records, list):
            continue
        for i, record in enumerate(records):
            if not isinstance(record, dict):  # certificate `snis` given as names: no tags of their own
                continue
            here = f"{path}.{name}[{i}]" if path else f"{name}[{i}]"
            if not tags <= set(record.get("tags") or []):
                yield f"{here}.tags", True
            yield from _untagged_paths(record, tags, here)
