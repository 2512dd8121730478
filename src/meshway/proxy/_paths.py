"""The upstream path: Kong's joining of `service.path` and the request path.

Rules (Kong's `path_handling`, kept exactly, including v1's surprising `/s` + `foo` = `/sfoo`):
- `postfix` is what is left of the request path after the matched route path when
  `strip_path` is on (the whole request path otherwise).
- v0: service path and postfix are joined with exactly one `/` between them, and the trailing
  slash of the request decides the trailing slash of the result.
- v1: plain concatenation, dropping one slash when both sides bring one; without strip_path the
  request path joins without its leading slash (`/s` + `/fv1req` = `/sfv1req`, Kong's table).
"""
from __future__ import annotations

__all__ = ["upstream_path"]


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
