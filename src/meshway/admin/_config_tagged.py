"""`POST /config` on a node with a database: the atomic equivalent of decK's `--select-tag` sync.

The document names its tags in `_info.select_tags`, where decK writes them in its files (a decK
user's file works unchanged, and KIC's tag `managed-by-ingress-controller` fits there). The node:
1. validates the whole document as DB-less would (400 naming every bad path, nothing changed);
2. requires every entity of the document to carry every select tag (400 naming the entity's path;
   decK adds the tags silently, but a file that does not carry them would be refused by its next
   sync's filter, so we say so at once);
3. in one transaction deletes the entities carrying every select tag and inserts the document's,
   leaving every other entity as it was.
References resolve inside the document only, as decK's without `default_lookup_tags`: a tagged route
cannot name a user's untagged service (400), so a later replace never has to guess what it owns.
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
    doc = {k: v for k, v in document.items() if k != "_info"}
    snapshot = parse_declarative(doc)
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
