"""Request paths: normalised for routing, joined with `service.path`, encoded for the wire.

Paths are handled as latin-1 text: one character per byte, so a percent-decoded byte stays one
character and encodes back to the same byte.

Normalisation (Kong 3's `normalize(path, true)`, nginx's `merge_slashes on`), for routing and
for what is forwarded:
- `%XX` triplets are decoded, except those of reserved characters (`!*'();:@&=+$,/?%#[]`),
  which stay encoded (hex upper-cased): `%2F` is not a slash and `%3F` not a query, so an
  encoded character never changes the path's structure; `%25` is never decoded twice.
- Dot segments are removed (`%2E` counts as a dot); `..` never climbs above the root.
- Runs of slashes are merged: `//admin` is `/admin`.
The path sent upstream is the normalised one (stripped and joined per the route), passed through
`escape_path`: every character that may not appear raw in a request line's path (controls,
space, non-ASCII, `"<>\\^`{|}`, `#`, `?` and a `%` that starts no triplet) is percent-encoded, so
`%0D%0A` in a request can never become a line break upstream. A query the client sent goes on
as received when it is printable ASCII without `#` (HTTP/1.1's parser admits nothing else);
an HTTP/2 client's query with other bytes, and any query a plugin sets, goes through
`escape_query`.

Joining (Kong's `path_handling`, kept exactly, including v1's surprising `/s` + `foo` = `/sfoo`):
- `postfix` is what is left of the request path after the matched route path when
  `strip_path` is on (the whole request path otherwise).
- v0: service path and postfix are joined with exactly one `/` between them, and the trailing
  slash of the request decides the trailing slash of the result.
- v1: plain concatenation, dropping one slash when both sides bring one; without strip_path the
  request path joins without its leading slash (`/s` + `/fv1req` = `/sfv1req`, Kong's table).
"""
from __future__ import annotations

import re

__all__ = ["escape_path", "escape_query", "from_text", "normalize_path", "to_text", "upstream_path"]

_RESERVED = "!*'();:@&=+$,/?%#[]"
# "2f" -> "%2F" (reserved: stays encoded), "41" -> "A": every two-hex-digit spelling, built once.
_TRIPLETS = {}
for _n in range(256):
    for _hx in {"%02x" % _n, "%02X" % _n, "%x%X" % (_n >> 4, _n & 15), "%X%x" % (_n >> 4, _n & 15)}:
        _TRIPLETS[_hx] = "%%%02X" % _n if chr(_n) in _RESERVED else chr(_n)
del _n, _hx
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")
_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]|%(?![0-9A-Fa-f]{2})")
_QUERY_UNSAFE = re.compile(r"[^\x21-\x22\x24-\x7e]")  # controls, space, #, DEL, non-ASCII


def normalize_path(path: str) -> str:
    """The path the router matches on (see the rules above); the common path (no `%`, no dot
    segment, no `//`) is returned untouched after three substring tests."""
    if "%" in path:
        path = _decode_unreserved(path)
    if "/." in path and _DOT_SEGMENT.search(path):
        return _remove_dots(path)
    if "//" in path:
        return re.sub("//+", "/", path)
    return path


def _decode_unreserved(path: str) -> str:
    pieces = path.split("%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        decoded = _TRIPLETS.get(piece[:2])
        out.append("%" + piece if decoded is None else decoded + piece[2:])
    return "".join(out)


def _remove_dots(path: str) -> str:
    out: list[str] = []
    for seg in path.split("/")[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg != "." and seg != "":
            out.append(seg)
    tail = "/" if path.endswith(("/", "/.", "/..")) and out else ""
    return "/" + "/".join(out) + tail


def _percent(m: re.Match) -> str:
    return "%%%02X" % ord(m.group(0))


def from_text(text: str) -> str:
    """Text a plugin or the config gave (Unicode) as the latin-1 view of its UTF-8 bytes; bytes
    that came from a request and went to a plugin as text (`to_text`) come back unchanged."""
    return text if text.isascii() else text.encode("utf-8", "surrogateescape").decode("latin-1")


def to_text(path: str) -> str:
    """A latin-1 view of request bytes as text for plugins (UTF-8; undecodable bytes kept)."""
    return path if path.isascii() else path.encode("latin-1").decode("utf-8", "surrogateescape")


_ESCAPED: dict[str, str] = {}  # paths escaped before: requests repeat theirs (a regex scan is ~60 instructions a byte)
_ESCAPED_MAX = 4096  # bounded: paths are client-controlled
_ESCAPED_PATH_MAX = 256


def escape_path(path: str) -> str:
    """`path` (latin-1 view) safe for a request line, naming the same resource (idempotent: an
    already-encoded path is unchanged)."""
    got = _ESCAPED.get(path)
    if got is not None:
        return got
    got = path if _PATH_UNSAFE.search(path) is None else _PATH_UNSAFE.sub(_percent, path)
    if len(path) <= _ESCAPED_PATH_MAX:
        if len(_ESCAPED) >= _ESCAPED_MAX:
            _ESCAPED.clear()
        _ESCAPED[path] = got
    return got


def escape_query(query: str) -> str:
    """A query string a plugin set, safe for a request line (only what cannot appear raw there
    is encoded: the query's own `%`, `+`, `&`, `=` mean what the plugin meant)."""
    if _QUERY_UNSAFE.search(query) is None:
        return query
    return _QUERY_UNSAFE.sub(_percent, query)


def upstream_path(base: str | None, req_path: str, postfix: str, strip: bool, handling: str = "v0") -> str:
    """The path sent upstream (without the query string)."""
    base = base or "/"
    if handling == "v1":
        return _v1(base, postfix if strip else req_path[1:])
    return _v0_strip(base, req_path, postfix) if strip else _v0_keep(base, req_path)


def _v1(base: str, postfix: str) -> str:
    if base.endswith("/") and postfix.startswith("/"):
        return base + postfix[1:]
    return base + postfix


def _v0_strip(base: str, req_path: str, postfix: str) -> str:
    if base.endswith("/"):
        if not postfix:
            if base == "/":
                return "/"
            return base if req_path.endswith("/") else base[:-1]
        return base[:-1] + postfix if postfix.startswith("/") else base + postfix
    if not postfix:
        return base + "/" if len(req_path) > 1 and req_path.endswith("/") else base
    return base + postfix if postfix.startswith("/") else base + "/" + postfix


def _v0_keep(base: str, req_path: str) -> str:
    if base.endswith("/"):
        return base + req_path[1:]
    return base if req_path == "/" else base + req_path
