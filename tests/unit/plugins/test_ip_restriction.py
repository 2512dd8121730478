"""ip-restriction: allow/deny CIDRs for IPv4 and IPv6, deny wins, status/message, schema."""
from __future__ import annotations

import pytest
from ctx_for_test import CtxForTest, make_plugin_for_test, run_phase_for_test
from pydantic import ValidationError

from meshway.plugins.bundled.ip_restriction import PLUGIN as IpRestriction

BLOCKED = (403, {"message": "Your IP address is not allowed"})


def check(ip, **config):
    return run_phase_for_test(make_plugin_for_test(IpRestriction, config), "access", CtxForTest(client_ip=ip))


@pytest.mark.parametrize("ip, blocked", [
    ("10.1.2.3", False), ("192.168.0.1", True), ("2001:db8::1", False), ("2001:db9::1", True), ("::ffff:10.0.0.1", False),
])
def test_allow_list(ip, blocked):
    result = check(ip, allow=["10.0.0.0/8", "2001:db8::/32"])
    assert (result[:2] == BLOCKED) if blocked else result is None


def test_deny_list_single_ip_and_cidr():
    assert check("1.2.3.4", deny=["1.2.3.4"])[:2] == BLOCKED
    assert check("172.16.5.5", deny=["172.16.0.0/12"])[:2] == BLOCKED
    assert check("8.8.8.8", deny=["172.16.0.0/12", "1.2.3.4"]) is None


def test_deny_wins_over_allow():
    assert check("10.0.0.5", allow=["10.0.0.0/8"], deny=["10.0.0.5/32"])[:2] == BLOCKED


def test_custom_status_and_message():
    assert check("9.9.9.9", deny=["9.9.9.9"], status=401, message="go away")[:2] == (401, {"message": "go away"})


def test_decision_cached_per_ip_still_correct():
    p = make_plugin_for_test(IpRestriction, {"deny": ["1.1.1.1"]})
    for _ in range(3):
        assert run_phase_for_test(p, "access", CtxForTest(client_ip="1.1.1.1"))[0] == 403
        assert run_phase_for_test(p, "access", CtxForTest(client_ip="1.1.1.2")) is None


@pytest.mark.parametrize("config", [{}, {"allow": ["not-an-ip"]}, {"deny": ["10.0.0.0/33"]}])
def test_invalid_config(config):
    with pytest.raises(ValidationError):
        IpRestriction.Config.model_validate(config)
