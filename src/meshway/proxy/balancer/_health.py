"""Health rules compiled from an upstream's `healthchecks` tree, and the pure state machine.

Rules (lua-resty-healthcheck's, which Kong uses):
- Each address is HEALTHY or UNHEALTHY and keeps four counters: successes, tcp failures,
  timeouts, http failures. Active and passive checks feed the same counters with their own
  thresholds; a threshold of 0 turns that kind of report off.
- A failure resets the success counter; a success resets the failure counters, so thresholds
  count *consecutive* outcomes (Kong keeps failure counts across successes when passive
  `healthy.successes` is 0; we do not: a busy target should not be ejected by 3 errors an hour).
- A healthy address turns unhealthy when one failure counter reaches its threshold; an
  unhealthy one turns healthy when successes reach `healthy.successes`. Passive checks with
  `healthy.successes = 0` therefore never bring a target back: an operator or active checks do.
- A status in neither list is no evidence either way and is ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._peer import Address

OK, HTTP, TCP, TIMEOUT = "ok", "http", "tcp", "timeout"

ACTIVE_DEFAULTS: dict[str, Any] = {
    "type": "http", "timeout": 1, "concurrency": 10, "http_path": "/", "https_sni": None,
    "https_verify_certificate": True, "headers": None,
    "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
    "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                  "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
}
PASSIVE_DEFAULTS: dict[str, Any] = {
    "type": "http",
    "healthy": {"http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301,
                                  302, 303, 304, 305, 306, 307, 308], "successes": 0},
    "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0,
                  "http_failures": 0},
}


@dataclass(frozen=True, slots=True)
class Rules:
    """Thresholds and statuses of one kind of check, active or passive."""

    successes: int
    http_failures: int
    tcp_failures: int
    timeouts: int
    healthy_statuses: frozenset[int]
    unhealthy_statuses: frozenset[int]

    @property
    def marks_unhealthy(self) -> bool:
        return bool(self.http_failures or self.tcp_failures or self.timeouts)

    def limit(self, kind: str) -> int:
        return getattr(self, _LIMIT[kind])

    def classify(self, status: int) -> str | None:
        if status in self.unhealthy_statuses:
            return HTTP
        return OK if status in self.healthy_statuses else None


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Everything the checker and the balancer need from `upstream.healthchecks`."""

    active: Rules
    passive: Rules
    probe_type: str
    timeout: float
    concurrency: int
    http_path: str
    headers: tuple[tuple[str, str], ...]
    verify: bool
    sni: str | None
    healthy_interval: float
    unhealthy_interval: float
    threshold: float

    @property
    def active_on(self) -> bool:
        return self.healthy_interval > 0 or self.unhealthy_interval > 0

    @property
    def passive_on(self) -> bool:
        return self.passive.marks_unhealthy

    @property
    def off(self) -> bool:
        return not (self.active_on or self.passive_on)


def _merged(defaults: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(defaults)
    for key, value in (given or {}).items():
        if isinstance(defaults.get(key), dict) and isinstance(value, dict):
            out[key] = _merged(defaults[key], value)
        elif value is not None:
            out[key] = value
    return out


def _rules(tree: dict[str, Any]) -> Rules:
    good, bad = tree["healthy"], tree["unhealthy"]
    return Rules(int(good["successes"]), int(bad["http_failures"]), int(bad["tcp_failures"]),
                 int(bad["timeouts"]), frozenset(good["http_statuses"]),
                 frozenset(bad["http_statuses"]))


def _headers(given: Any) -> tuple[tuple[str, str], ...]:
    # Kong's shape is {"name": ["v1", "v2"]}; a plain string value is accepted too.
    pairs = []
    for name, values in (given or {}).items():
        for value in [values] if isinstance(values, str) else values:
            pairs.append((name, str(value)))
    return tuple(pairs)


def compile_health(tree: dict[str, Any] | None) -> HealthConfig:
    """Kong's defaults filled under whatever the upstream gives, computed once per config."""
    tree = tree or {}
    active = _merged(ACTIVE_DEFAULTS, tree.get("active"))
    passive = _merged(PASSIVE_DEFAULTS, tree.get("passive"))
    return HealthConfig(
        _rules(active), _rules(passive), active["type"], float(active["timeout"]),
        max(1, int(active["concurrency"])), active["http_path"], _headers(active["headers"]),
        bool(active["https_verify_certificate"]), active["https_sni"],
        float(active["healthy"]["interval"]), float(active["unhealthy"]["interval"]),
        float(tree.get("threshold") or 0))


def record(addr: Address, rules: Rules, kind: str) -> bool:
    """Apply one outcome to an address; True when its health flipped."""
    if kind == OK:
        return _success(addr, rules.successes)
    limit = rules.limit(kind)
    if not limit:
        return False
    addr.ok = 0
    count = getattr(addr, _COUNTER[kind]) + 1
    setattr(addr, _COUNTER[kind], count)
    if addr.healthy and count >= limit:
        set_healthy(addr, False)
        return True
    return False


_COUNTER = {HTTP: "http", TCP: "tcp", TIMEOUT: "timeouts"}
_LIMIT = {OK: "successes", HTTP: "http_failures", TCP: "tcp_failures", TIMEOUT: "timeouts"}


def _success(addr: Address, limit: int) -> bool:
    addr.tcp = addr.timeouts = addr.http = 0
    if addr.healthy or not limit:
        return False
    addr.ok += 1
    if addr.ok >= limit:
        set_healthy(addr, True)
        return True
    return False


def set_healthy(addr: Address, healthy: bool) -> None:
    addr.healthy = healthy
    addr.ok = addr.tcp = addr.timeouts = addr.http = 0
