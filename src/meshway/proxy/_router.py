"""The HTTP router: which route serves a request, compiled once per config.

Rules (Kong 3 "traditional_compatible" semantics, kept):
- A route is split per path (a route without paths is one entry): each entry has its own
  priority, as Kong splits routes by path before building its matcher.
- Priority, highest first: number of matching fields used (methods, hosts, paths, headers,
  snis, destinations); then "every host is plain" (no wildcard); then the number of headers;
  then regex paths before plain prefixes; then `regex_priority` (regex paths only); then the
  length of the plain path prefix. Ties go to the route listed first in the snapshot.
- Hosts: exact (`example.com`), leading wildcard (`*.example.com`), trailing wildcard
  (`example.*`), optionally with a port (`example.com:8080` then needs that port; the port of a
  Host header without one is the listener's scheme default, or the original destination port on
  transparent listeners). Names compare case-insensitively, and a Host's trailing dot is
  ignored (`example.com.` is `example.com`, as nginx's `$host`).
- Paths: matched against the normalised request path (`_paths.normalize_path`: percent-decoded
  except reserved characters, dot segments removed, slashes merged); a plain prefix (itself
  normalised at compile time) matches when that path starts with it; a `~` path is a regex
  anchored at the start; named captures go to `uri_captures` (as text: UTF-8 decoded).
- Headers: every named header must be present with one of the listed values (case-insensitive;
  a value starting with `~*` is a case-insensitive regex).
- `protocols` does not take part in matching between http and https: a plain-HTTP request that
  matches an https-only route gets the route's redirect status (see the pipeline), unless a
  route that takes http matches too (`match(..., accept=...)`): the service-mesh walkthrough has
  an http and an https route on the same host.

Theory of operation: entries are bucketed by host (exact dict, wildcard suffix/prefix dicts,
host-less list). Inside a bucket plain prefixes live in a dict keyed by the prefix, looked up by
the request path cut at each distinct prefix length; regex and path-less entries live in a list
sorted by priority, scanned only until an entry cannot beat the best match found so far. So a
lookup among 10,000 host/prefix routes costs a handful of dict probes.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

from ._paths import from_text, normalize_path, to_text

__all__ = ["Router", "RouteMatch", "compile_router", "normalize_path", "valid_host"]

# nginx's ngx_http_validate_host: no control character, space, DEL, `/`, `\\` or `..`.
_HOST_BAD = re.compile(r"[\x00-\x20\x7f/\\]|\.\.")


class RouteMatch:
    """The result of a lookup: the route, its compiled entry and what the path gave.

    `path` is the normalised path matched on, `postfix` what follows the matched part of it."""

    __slots__ = ("entry", "route", "captures", "postfix", "matched_path", "path", "upstream")

    def __init__(self, entry: "_Entry", captures: Mapping[str, str], postfix: str, matched_path: str | None,
                 path: str):
        self.entry = entry
        self.route = entry.route
        self.captures = captures
        self.postfix = postfix
        self.matched_path = matched_path
        self.path = path
        self.upstream: bytes | None = None  # the upstream path for it, once computed (_pipeline)


class _Entry:
    """One (route, path) pair with its matching rules and priority."""

    __slots__ = ("route", "position", "key", "methods", "hosts", "headers", "snis", "dsts",
                 "prefix", "regex", "data")

    def __init__(self, route: Mapping[str, Any], position: int, path: str | None, data: Any):
        self.route = route
        self.position = position
        self.data = data
        self.methods = frozenset(m.upper() for m in route.get("methods") or ()) or None
        self.hosts = [_parse_host(h) for h in route.get("hosts") or ()]
        self.headers = _compile_headers(route.get("headers") or {})
        self.snis = frozenset(s.lower() for s in route.get("snis") or ()) or None
        self.dsts = tuple(route.get("destinations") or ()) or None
        self.prefix = self.regex = None
        if path is not None and path.startswith("~"):
            self.regex = re.compile(from_text(path[1:]))  # paths are matched as latin-1 views of bytes
        elif path is not None:
            self.prefix = normalize_path(from_text(path))
        self.key = (self._priority(route, path), -position)

    def _priority(self, route: Mapping[str, Any], path: str | None) -> int:
        fields = sum(1 for f in (self.methods, self.hosts, path, self.headers, self.snis, self.dsts) if f)
        plain_hosts = bool(self.hosts) and all(kind == "exact" for kind, _, _ in self.hosts)
        regex = self.regex is not None
        prio = fields << 61 | int(plain_hosts) << 60 | min(len(self.headers), 255) << 52 | int(regex) << 51
        if regex:
            prio |= (max(0, min(int(route.get("regex_priority") or 0), (1 << 32) - 1)) << 19)
        elif self.prefix:
            prio |= min(len(self.prefix), 0x7FFFF)
        return prio

    def matches_rest(self, method: str, headers: Callable[[str], str | None] | None, sni: str | None,
                     dst: tuple[str, int] | None) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.snis is not None and (sni is None or not _sni_matches(self.snis, sni)):
            return False
        if self.headers and (headers is None or not _headers_match(self.headers, headers)):
            return False
        if self.dsts is not None and (dst is None or not _dst_matches(self.dsts, dst)):
            return False
        return True

    def match_path(self, path: str) -> RouteMatch | None:
        if self.regex is not None:
            m = self.regex.match(path)
            if m is None:
                return None
            caps = {k: to_text(v) for k, v in m.groupdict().items() if v is not None}
            for i, g in enumerate(m.groups(), 1):
                if g is not None:
                    caps[str(i)] = to_text(g)
            return RouteMatch(self, caps, path[m.end():], m.group(0), path)
        if self.prefix is not None:
            if not path.startswith(self.prefix):
                return None
            return RouteMatch(self, _EMPTY, path[len(self.prefix):], self.prefix, path)
        return RouteMatch(self, _EMPTY, path, None, path)


_EMPTY: Mapping[str, str] = {}


def _parse_host(host: str) -> tuple[str, str, int | None]:
    host = host.lower()
    port = None
    name, sep, p = host.rpartition(":")
    if sep and p.isdigit() and (":" not in name or name.startswith("[")):
        host, port = name, int(p)
    if host.startswith("*."):
        return "suffix", host[1:], port
    if host.endswith(".*"):
        return "prefix", host[:-1], port
    return "exact", host, port


def _compile_headers(headers: Mapping[str, Iterable[str]]) -> tuple:
    out = []
    for name, values in headers.items():
        plain = frozenset(v.lower() for v in values if not v.startswith("~*"))
        regexes = tuple(re.compile(v[2:], re.I) for v in values if v.startswith("~*"))
        out.append((name.lower(), plain, regexes))
    return tuple(out)


def _headers_match(rules: tuple, get: Callable[[str], str | None]) -> bool:
    for name, plain, regexes in rules:
        value = get(name)
        if value is None:
            return False
        if value.lower() in plain:
            continue
        if not any(r.search(value) for r in regexes):
            return False
    return True


def _sni_matches(snis: frozenset, sni: str) -> bool:
    sni = sni.lower()
    if sni in snis:
        return True
    dot = sni.find(".")
    return dot > 0 and "*" + sni[dot:] in snis


def _dst_matches(dsts: tuple, dst: tuple[str, int]) -> bool:
    import ipaddress

    for rule in dsts:
        ip, port = rule.get("ip"), rule.get("port")
        if port is not None and port != dst[1]:
            continue
        if ip is not None and ipaddress.ip_address(dst[0]) not in ipaddress.ip_network(ip, strict=False):
            continue
        return True
    return False


class _Bucket:
    """The entries reachable through one host key: a prefix dict and a sorted list for the rest."""

    __slots__ = ("prefixes", "lengths", "others")

    def __init__(self) -> None:
        self.prefixes: dict[str, list] = {}
        self.lengths: tuple[int, ...] = ()
        self.others: list = []

    def add(self, entry: _Entry, port: int | None) -> None:
        if entry.prefix is not None:
            self.prefixes.setdefault(entry.prefix, []).append((entry, port))
        else:
            self.others.append((entry, port))

    def freeze(self) -> None:
        for items in self.prefixes.values():
            items.sort(key=lambda item: item[0].key, reverse=True)
        self.others.sort(key=lambda item: item[0].key, reverse=True)
        self.lengths = tuple(sorted({len(p) for p in self.prefixes}, reverse=True))

    def best(self, req: tuple, best: RouteMatch | None) -> RouteMatch | None:
        method, path, port, headers, sni, dst, accept = req
        prefixes = self.prefixes
        plen = len(path)
        for length in self.lengths:
            if length > plen:
                continue
            items = prefixes.get(path[:length])
            if items is None:
                continue
            for entry, want_port in items:
                if best is not None and entry.key <= best.entry.key:
                    break
                if (want_port is None or want_port == port) and entry.matches_rest(method, headers, sni, dst) \
                        and (accept is None or accept(entry.data)):
                    best = RouteMatch(entry, _EMPTY, path[length:], entry.prefix, path)
                    break
        for entry, want_port in self.others:
            if best is not None and entry.key <= best.entry.key:
                break
            if (want_port is None or want_port == port) and entry.matches_rest(method, headers, sni, dst) \
                    and (accept is None or accept(entry.data)):
                m = entry.match_path(path)
                if m is not None:
                    best = m
        return best


class Router:
    """Compiled HTTP routes; `match()` is pure and takes only request values."""

    def __init__(self, entries: list[_Entry]):
        self.exact: dict[str, _Bucket] = {}
        self.suffix: dict[str, _Bucket] = {}
        self.prefix: dict[str, _Bucket] = {}
        self.any = _Bucket()
        self.needs_headers = any(e.headers for e in entries)
        self.size = len(entries)
        for entry in entries:
            self._index(entry)
        for bucket in (*self.exact.values(), *self.suffix.values(), *self.prefix.values(), self.any):
            bucket.freeze()
        self.has_suffix = bool(self.suffix)
        self.has_prefix = bool(self.prefix)

    def _index(self, entry: _Entry) -> None:
        if not entry.hosts:
            self.any.add(entry, None)
            return
        table = {"exact": self.exact, "suffix": self.suffix, "prefix": self.prefix}
        for kind, name, port in entry.hosts:
            table[kind].setdefault(name, _Bucket()).add(entry, port)

    def match(self, method: str, host: str | None, path: str, *, default_port: int = 80,
              headers: Callable[[str], str | None] | None = None, sni: str | None = None,
              dst: tuple[str, int] | None = None, accept: Callable[[Any], bool] | None = None) -> RouteMatch | None:
        """The best route for these request values, or None (Kong: 404 no Route matched).

        `accept(entry_data)` restricts the candidates (e.g. to routes that take http)."""
        name, port = _split_host(host, default_port)
        req = (method, path, port, headers, sni, dst, accept)
        best = None
        if name:
            bucket = self.exact.get(name)
            if bucket is not None:
                best = bucket.best(req, best)
            if self.has_suffix:
                for key in _suffixes(name):
                    bucket = self.suffix.get(key)
                    if bucket is not None:
                        best = bucket.best(req, best)
            if self.has_prefix:
                for key in _prefixes(name):
                    bucket = self.prefix.get(key)
                    if bucket is not None:
                        best = bucket.best(req, best)
        return self.any.best(req, best)


def valid_host(host: str | None) -> bool:
    """A Host (or `:authority`, or absolute-form URI authority) nginx would accept; None (an
    HTTP/1.0 request without one) is fine, an empty or all-dots name is not."""
    if host is None:
        return True
    if not host or _HOST_BAD.search(host) is not None:
        return False
    name = host if host.endswith("]") else host.rpartition(":")[0] if ":" in host else host
    return name.strip(".") != "" or host.startswith("[")


def _split_host(host: str | None, default_port: int) -> tuple[str, int]:
    """(lowercase name without a trailing dot, port), as nginx's `$host` names the server."""
    if not host:
        return "", default_port
    host = host.lower()
    if host.endswith("]"):
        return host, default_port
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return (name[:-1] if name.endswith(".") else name), int(port)
    return (host[:-1] if host.endswith(".") else host), default_port


def _suffixes(name: str):
    i = name.find(".")
    while i >= 0:
        yield name[i:]
        i = name.find(".", i + 1)


def _prefixes(name: str):
    i = name.rfind(".")
    while i > 0:
        yield name[: i + 1]
        i = name.rfind(".", 0, i)


def compile_router(routes: Iterable[Mapping[str, Any]], data_for: Callable[[Mapping[str, Any]], Any] = lambda r: None) -> Router:
    """Build the router; `data_for(route)` attaches compiled per-route data (service, chain...)."""
    entries = []
    for position, route in enumerate(routes):
        data = data_for(route)
        for path in route.get("paths") or (None,):
            entries.append(_Entry(route, position, path, data))
    return Router(entries)
