"""Syntax check of a service-resolver subset `Filter` (go-bexpr, Consul's filtering language).

Consul only checks that the expression parses when the entry is written (the selectors are
checked against the catalog when the chain is compiled), so this is a parser without evaluation:
`Service.Meta.version == v1`, `Service.Tags contains "canary"`, `"x" in Service.Tags`,
`Service.Meta.env is not empty`, `Service.ID matches "^web-"`, joined by and/or/not and parentheses.
"""
from __future__ import annotations

import re

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<op>==|!=|\(|\)|\[|\])|(?P<word>[^\s()\[\]"=!`]+))')
_KEYWORDS = {"and", "or", "not", "in", "contains", "matches", "is", "empty"}


class FilterError(ValueError):
    pass


def check_filter(text: str) -> None:
    tokens = _tokens(text)
    parser = _Parser(tokens)
    parser.expr()
    if parser.pos != len(tokens):
        raise FilterError(f"unexpected {tokens[parser.pos]!r}")


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

    def expr(self) -> None:
        self.conjunction()
        while self.peek() == "or":
            self.take()
            self.conjunction()

    def conjunction(self) -> None:
        self.unary()
        while self.peek() == "and":
            self.take()
            self.unary()

    def unary(self) -> None:
        if self.peek() == "not":
            self.take()
            self.unary()
        elif self.peek() == "(":
            self.take()
            self.expr()
            self.take(")")
        else:
            self.match()

    def match(self) -> None:
        first = self.take()
        if first.startswith(('"', "`")) or not _is_selector(first):  # value [not] in selector
            if self.peek() == "not":
                self.take()
            self.take("in")
            self.selector()
            return
        self.pos -= 1
        self.selector()
        op = self.take()
        if op in ("==", "!="):
            self.value()
        elif op == "is":
            if self.peek() == "not":
                self.take()
            self.take("empty")
        elif op == "not":
            if self.take() not in ("contains", "matches", "in"):
                raise FilterError(f"expected contains, matches or in after 'not' at {self.tokens[self.pos - 1]!r}")
            self.value()
        elif op in ("contains", "matches"):
            self.value()
        elif op == "in":  # bare value `v1 in Service.Tags`
            self.selector()
        else:
            raise FilterError(f"expected an operator after the selector, found {op!r}")

    def selector(self) -> None:
        token = self.take()
        if not _is_selector(token):
            raise FilterError(f"{token!r} is not a selector")
        while self.peek() == "[":
            self.take()
            self.value()
            self.take("]")
            if self.peek() and self.peek().startswith("."):
                self.take()

    def value(self) -> None:
        token = self.take()
        if token in ("(", ")", "[", "]", "==", "!=") or token in _KEYWORDS:
            raise FilterError(f"expected a value, found {token!r}")


def _is_selector(token: str) -> bool:
    return token not in _KEYWORDS and bool(re.fullmatch(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*", token))
