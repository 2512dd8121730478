"""Listing rules shared by the store and the DB-less snapshot view: tags filter, size, offset tokens.

Kong's rules: `size` 1..1000 (default 100); `offset` is an opaque token from a previous page;
`tags=a,b` keeps entities having every tag, `tags=a/b` entities having any; both kinds of
separator in one filter are refused.
"""
from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from meshway.model import InvalidOffset, InvalidOption, InvalidSize

DEFAULT_SIZE = 100
MAX_SIZE = 1000


def parse_size(size: Any) -> int:
    if size is None:
        return DEFAULT_SIZE
    try:
        value = int(size)
    except (TypeError, ValueError):
        raise InvalidSize("size must be a number") from None
    if not 1 <= value <= MAX_SIZE:
        raise InvalidSize(f"size must be an integer between 1 and {MAX_SIZE}")
    return value


def parse_tags(tags: str | None) -> tuple[str, set[str]] | None:
    """`a,b` -> ("and", {a, b}); `a/b` -> ("or", {a, b})."""
    if not tags:
        return None
    if "," in tags and "/" in tags:
        raise InvalidOption("invalid option (tags: invalid filter: cannot mix ',' (and) with '/' (or))")
    mode, sep = ("or", "/") if "/" in tags else ("and", ",")
    return mode, {t for t in tags.split(sep) if t}


def encode_offset(entity_id: str) -> str:
    return base64.urlsafe_b64encode(entity_id.encode()).decode().rstrip("=")


def decode_offset(token: str) -> str:
    try:
        value = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
        return str(uuid.UUID(value))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidOffset(f"'{token}' is not a valid offset: bad base64 encoding") from None


def _tag_match(entity: dict, tags: tuple[str, set[str]] | None) -> bool:
    if tags is None:
        return True
    mode, wanted = tags
    have = set(entity.get("tags") or ())
    return wanted <= have if mode == "and" else bool(wanted & have)


def paginate(rows: list[dict], *, size: Any = None, offset: str | None = None,
             tags: str | None = None) -> tuple[list[dict], str | None]:
    """One page of `rows` (sorted by id) and the offset of the next page, if any."""
    limit, wanted = parse_size(size), parse_tags(tags)
    after = decode_offset(offset) if offset else None
    matching = [r for r in rows if _tag_match(r, wanted) and (after is None or r["id"] > after)]
    page = matching[:limit]
    return page, encode_offset(page[-1]["id"]) if len(matching) > limit else None
