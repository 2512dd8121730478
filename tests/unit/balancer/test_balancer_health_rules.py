"""The pure parts under the checks: compiled rules, the state machine, probe wire format, wheels."""
from __future__ import annotations

from fractions import Fraction

import pytest

from meshway.proxy.balancer import Peer
from meshway.proxy.balancer._algorithms import MAX_WHEEL, wheel_points
from meshway.proxy.balancer._health import HTTP, OK, TCP, compile_health, record
from meshway.proxy.balancer._peer import Address
from meshway.proxy.balancer._probe import parse_status, request_bytes

PEER = Peer("10.0.0.1", 8080, "api.internal:8080", "api.internal")


def test_kong_defaults_mean_healthchecks_off():
    cfg = compile_health(None)
    assert cfg.off and not cfg.active_on and not cfg.passive_on
    assert cfg.active.classify(302) == OK and cfg.active.classify(404) == HTTP
    assert cfg.passive.classify(404) is None and cfg.passive.classify(503) == HTTP


def test_given_fields_override_defaults_and_null_keeps_them():
    cfg = compile_health({"active": {"healthy": {"interval": 5}, "http_path": None,
                                     "headers": {"x-a": ["1", "2"]}}, "threshold": 25})
    assert cfg.active_on and cfg.healthy_interval == 5 and cfg.unhealthy_interval == 0
    assert cfg.http_path == "/" and cfg.headers == (("x-a", "1"), ("x-a", "2"))
    assert cfg.threshold == 25 and cfg.concurrency == 10 and cfg.verify


def test_active_unhealthy_comes_back_after_m_successes():
    rules = compile_health({"active": {"healthy": {"successes": 3},
                                       "unhealthy": {"tcp_failures": 2}}}).active
    addr = Address(PEER, Fraction(100))
    assert [record(addr, rules, TCP) for _ in range(2)] == [False, True]
    assert not addr.healthy
    assert [record(addr, rules, OK) for _ in range(3)] == [False, False, True]
    assert addr.healthy


def test_a_failure_while_recovering_restarts_the_success_count():
    rules = compile_health({"active": {"healthy": {"successes": 2},
                                       "unhealthy": {"http_failures": 1}}}).active
    addr = Address(PEER, Fraction(100))
    record(addr, rules, HTTP)
    record(addr, rules, OK)
    record(addr, rules, HTTP)
    record(addr, rules, OK)
    assert not addr.healthy
    record(addr, rules, OK)
    assert addr.healthy


def test_probe_request_and_status_parsing():
    cfg = compile_health({"active": {"http_path": "/health", "headers": {"x-k": ["v"]}}})
    assert request_bytes(PEER, cfg) == (b"GET /health HTTP/1.0\r\nHost: api.internal:8080\r\n"
                                        b"x-k: v\r\nConnection: close\r\n\r\n")
    assert parse_status(b"HTTP/1.1 503 Service Unavailable\r\n") == 503
    with pytest.raises(ValueError):
        parse_status(b"SSH-2.0-OpenSSH\r\n")


def test_wheel_points_are_exact_ratios_and_capped():
    assert wheel_points([Fraction(100), Fraction(50), Fraction(0, 1) + 25]) == [4, 2, 1]
    assert wheel_points([Fraction(100, 3), Fraction(100)]) == [1, 3]
    big = wheel_points([Fraction(w) for w in range(60_000, 60_010)])
    assert sum(big) <= MAX_WHEEL and max(big) - min(big) <= 1
