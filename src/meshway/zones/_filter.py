"""Service-resolver subset `Filter`s (go-bexpr, Consul's filtering language): checked when an entry
is written, evaluated against instances when a gateway's routes are built.

Consul only checks that the expression parses when the entry is written (the selectors are
checked against the catalog when the chain is compiled). Syntax: `Service.Meta.version == v1`,
`Service.Tags contains "canary"`, `"x" in Service.Tags`, `Service.Meta.env is not empty`,
`Service.ID matches "^web-"`, `Service.Meta["version"] != v2`, joined by and/or/not and parentheses.

Evaluation (`compile_filter`) against an instance as Consul's health query sees it (`_gateway.instance_view`):
a selector is a path into nested maps (a missing key is the empty string, as bexpr's zero value);
`==`/`!=` compare as strings; `contains` and `in` test a list's members, a map's keys or a
string's substring; `matches` is a regular-expression search; `is empty` a zero length.
"""
from __future__ import annotations

import re
from typing import Any, Callable

Predicate = Callable[[Any], bool]

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<op>==|!=|\(|\)|\[|\])|(?P<word>[^\s()\[\]"=!`]+))')
_KEYWORDS = {"and", "or", "not", "in", "contains", "matches", "is", "empty"}


class FilterError(ValueError):
    pass


def compile_filter(text: str) -> Predicate:
    """The expression as a predicate over an instance's view; FilterError when it does not parse."""
    tokens = _tokens(text)
    parser = _Parser(tokens)
    predicate = parser.expr()
    if parser.pos != len(tokens):
        raise FilterError(f"unexpected {tokens[parser.pos]!r}")
    return predicate


def check_filter(text: str) -> None:
    compile_filter(text)


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"invalid character at position {pos + 1}")
        out.append(m.group(m.lastgroup).strip())
        pos = m.end()
    if not out:
        raise FilterError("empty expression")
    return out


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise FilterError("unexpected end of expression" + (f", expected {expected!r}" if expected else ""))
        if expected is not None and token != expected:
            raise FilterError(f"expected {expected!r}, found {token!r}")
        self.pos += 1
        return token

    def expr(self) -> Predicate:
        parts = [self.conjunction()]
        while self.peek() == "or":
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda v: any(p(v) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.unary()]
        while self.peek() == "and":
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda v: all(p(v) for p in parts))

    def unary(self) -> Predicate:
        if self.peek() == "not":
            self.take()
            inner = self.unary()
            return lambda v: not inner(v)
        if self.peek() == "(":
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        return self.match()

    def match(self) -> Predicate:
        first = self.take()
        if first.startswith(('"', "`")) or not _is_selector(first):  # value [not] in selector
            negate = self.peek() == "not"
            if negate:
                self.take()
            self.take("in")
            path, literal = self.selector(), _literal(first)
            return lambda v: _contains(_resolve(v, path), literal) != negate
        self.pos -= 1
        path = self.selector()
        op = self.take()
        if op in ("==", "!="):
            literal, equal = self.value(), op == "=="
            return lambda v: (_text(_resolve(v, path)) == literal) == equal
        if op == "is":
            negate = self.peek() == "not"
            if negate:
                self.take()
            self.take("empty")
            return lambda v: _empty(_resolve(v, path)) != negate
        negate = op == "not"
        if negate:
            op = self.take()
            if op not in ("contains", "matches", "in"):
                raise FilterError(f"expected contains, matches or in after 'not' at {self.tokens[self.pos - 1]!r}")
        if op == "contains":
            literal = self.value()
            return lambda v: _contains(_resolve(v, path), literal) != negate
        if op == "matches":
            pattern = _regex(self.value())
            return lambda v: bool(pattern.search(_text(_resolve(v, path)))) != negate
        if op == "in" and not negate:  # bare value `v1 in Service.Tags`: the first word was the value
            haystack, literal = self.selector(), first
            return lambda v: _contains(_resolve(v, haystack), literal)
        if op == "in":  # `Selector not in Value`: the selector's value is not within the literal
            literal = self.value()
            return lambda v: _text(_resolve(v, path)) not in literal
        raise FilterError(f"expected an operator after the selector, found {op!r}")

    def selector(self) -> list[str]:
        token = self.take()
        if not _is_selector(token):
            raise FilterError(f"{token!r} is not a selector")
        path = token.split(".")
        while self.peek() == "[":
            self.take()
            path.append(self.value())
            self.take("]")
            if self.peek() and self.peek().startswith("."):
                path.extend(p for p in self.take().split(".") if p)
        return path

    def value(self) -> str:
        token = self.take()
        if token in ("(", ")", "[", "]", "==", "!=") or token in _KEYWORDS:
            raise FilterError(f"expected a value, found {token!r}")
        return _literal(token)


def _is_selector(token: str) -> bool:
    return token not in _KEYWORDS and bool(re.fullmatch(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*", token))


def _literal(token: str) -> str:
    if token.startswith('"'):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    if token.startswith("`"):
        return token[1:-1]
    return token


def _regex(text: str) -> "re.Pattern[str]":
    try:
        return re.compile(text)
    except re.error as e:
        raise FilterError(f"invalid regular expression {text!r}: {e}") from None


def _resolve(view: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(view, dict):
            return ""
        view = view.get(part, "")
    return view


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _empty(value: Any) -> bool:
    return value is None or (hasattr(value, "__len__") and len(value) == 0)


def _contains(value: Any, literal: str) -> bool:
    if isinstance(value, (list, tuple, dict)):
        return literal in value
    return literal in _text(value)
