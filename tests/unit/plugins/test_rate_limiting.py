"""rate-limiting (policy local): windows, identifiers, Kong's headers, 429, schema checks."""
from __future__ import annotations

import pytest
from ctx_for_test import CtxForTest, make_plugin_for_test, run_phase_for_test
from pydantic import ValidationError

from meshway.plugins.bundled import _ratelimit
from meshway.plugins.bundled.rate_limiting import PLUGIN as RateLimiting

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z: 20 s into its minute


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    _ratelimit.LOCAL.counts.clear()
    # and its last sweep: one at the real time (an earlier test's) would be "in the future" here
    monkeypatch.setattr(_ratelimit.LOCAL, "_swept", 0.0)
    now = [T0]
    monkeypatch.setattr(_ratelimit, "now", lambda: now[0])
    return now


def request(plugin, **ctx):
    """The access phase; returns (exit or None, the response headers it set)."""
    c = CtxForTest(route={"id": "r1"}, service={"id": "s1"}, **ctx)
    result = run_phase_for_test(plugin, "access", c)
    if result is None:
        return None, dict(c.response_headers.items)
    return result, result[2]


def test_allows_up_to_the_limit_then_429_with_retry_after():
    p = make_plugin_for_test(RateLimiting, {"minute": 3})
    seen = [request(p)[1]["X-RateLimit-Remaining-Minute"] for _ in range(3)]
    assert seen == ["2", "1", "0"]
    result, headers = request(p)
    assert result[:2] == (429, {"message": "API rate limit exceeded"})
    assert headers["Retry-After"] == "40" and headers["RateLimit-Reset"] == "40"
    assert headers["X-RateLimit-Remaining-Minute"] == "0" and headers["RateLimit-Limit"] == "3"


def test_new_window_resets(clock):
    p = make_plugin_for_test(RateLimiting, {"second": 1})
    assert request(p)[0] is None
    assert request(p)[0][0] == 429
    clock[0] += 1
    assert request(p)[0] is None


def test_headers_for_several_periods_and_most_constrained_ratelimit_headers():
    p = make_plugin_for_test(RateLimiting, {"second": 5, "hour": 100})
    _, headers = request(p)
    assert headers["X-RateLimit-Limit-Second"] == "5" and headers["X-RateLimit-Remaining-Second"] == "4"
    assert headers["X-RateLimit-Limit-Hour"] == "100" and headers["X-RateLimit-Remaining-Hour"] == "99"
    assert (headers["RateLimit-Limit"], headers["RateLimit-Remaining"], headers["RateLimit-Reset"]) == ("5", "4", "1")


def test_rejected_requests_are_not_counted_in_other_periods():
    p = make_plugin_for_test(RateLimiting, {"second": 1, "minute": 10})
    request(p)
    result, headers = request(p)
    assert result[0] == 429 and headers["X-RateLimit-Remaining-Minute"] == "9"


def test_limit_by_ip_separates_clients():
    p = make_plugin_for_test(RateLimiting, {"minute": 1, "limit_by": "ip"})
    assert request(p, client_ip="1.1.1.1")[0] is None
    assert request(p, client_ip="2.2.2.2")[0] is None
    assert request(p, client_ip="1.1.1.1")[0][0] == 429


def test_limit_by_consumer_falls_back_to_ip():
    p = make_plugin_for_test(RateLimiting, {"minute": 1})
    c = CtxForTest(route={"id": "r1"}, client_ip="1.1.1.1")
    c.authenticate({"id": "consumer-a"}, {"id": "cred"})
    assert run_phase_for_test(p, "access", c) is None
    assert request(p, client_ip="1.1.1.1")[0] is None  # anonymous client: counted by IP
    c2 = CtxForTest(route={"id": "r1"}, client_ip="9.9.9.9")
    c2.authenticate({"id": "consumer-a"}, {"id": "cred"})
    assert run_phase_for_test(p, "access", c2)[0] == 429  # same consumer, other IP


def test_limit_by_header_and_path():
    p = make_plugin_for_test(RateLimiting, {"minute": 1, "limit_by": "header", "header_name": "x-tenant"})
    assert request(p, headers={"x-tenant": "a"})[0] is None
    assert request(p, headers={"x-tenant": "b"})[0] is None
    assert request(p, headers={"x-tenant": "a"})[0][0] == 429
    p = make_plugin_for_test(RateLimiting, {"minute": 1, "limit_by": "path", "path": "/login"})
    assert request(p, path="/login", client_ip="1.1.1.1")[0] is None
    assert request(p, path="/login", client_ip="2.2.2.2")[0][0] == 429


def test_hide_client_headers_and_custom_error():
    p = make_plugin_for_test(RateLimiting, {"minute": 1, "hide_client_headers": True, "error_code": 403, "error_message": "slow down"})
    assert request(p) == (None, {})
    result, headers = request(p)
    assert result[:2] == (403, {"message": "slow down"}) and headers == {}


def test_month_and_year_windows_start_on_calendar_boundaries():
    starts = _ratelimit.Windows().starts(T0)
    assert starts["month"] == 1698796800 and starts["year"] == 1672531200  # 2023-11-01, 2023-01-01 UTC
    assert starts["minute"] == T0 - 20 and starts["second"] == T0


@pytest.mark.parametrize("config", [
    {}, {"second": 10, "minute": 5}, {"minute": 0}, {"minute": 1, "policy": "redis"},
    {"minute": 1, "limit_by": "header"}, {"minute": 1, "policy": "global"},
])
def test_invalid_configs(config):
    with pytest.raises(ValidationError):
        RateLimiting.Config.model_validate(config)


def test_expired_windows_are_swept(clock):
    p = make_plugin_for_test(RateLimiting, {"second": 5})
    request(p)
    clock[0] += 5
    request(p)
    assert len(_ratelimit.LOCAL.counts) == 1
