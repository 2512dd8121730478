"""acl: allow/deny by the consumer's groups, X-Consumer-Groups, authenticated groups, schema."""
from __future__ import annotations

import pytest
from ctx_for_test import CtxForTest, IndexForTest, consumer_for_test, make_plugin_for_test, run_phase_for_test
from pydantic import ValidationError

from meshway.plugins.bundled.acl import PLUGIN as Acl

ADMIN = consumer_for_test("admin")
USER = consumer_for_test("user")
LONER = consumer_for_test("loner")
ACLS = [{"id": "1", "consumer": {"id": ADMIN["id"]}, "group": "admins"},
        {"id": "2", "consumer": {"id": ADMIN["id"]}, "group": "staff"},
        {"id": "3", "consumer": {"id": USER["id"]}, "group": "users"}]


def plugin(**config):
    return make_plugin_for_test(Acl, config, IndexForTest(consumers=[ADMIN, USER, LONER], acls=ACLS))


def as_consumer(consumer, **kw):
    ctx = CtxForTest(**kw)
    ctx.authenticate(consumer, {"id": "cred"})
    return ctx


def test_allow_list_admits_members_and_sets_groups_header():
    ctx = as_consumer(ADMIN)
    assert run_phase_for_test(plugin(allow=["admins"]), "access", ctx) is None
    assert ctx.get_header("X-Consumer-Groups") == "admins, staff"


def test_allow_list_refuses_others_with_403():
    for consumer in (USER, LONER):
        assert run_phase_for_test(plugin(allow=["admins"]), "access", as_consumer(consumer))[:2] == \
            (403, {"message": "You cannot consume this service"})


def test_deny_list():
    assert run_phase_for_test(plugin(deny=["users"]), "access", as_consumer(USER))[0] == 403
    assert run_phase_for_test(plugin(deny=["users"]), "access", as_consumer(ADMIN)) is None
    assert run_phase_for_test(plugin(deny=["users"]), "access", as_consumer(LONER)) is None


def test_unauthenticated_is_401():
    assert run_phase_for_test(plugin(allow=["admins"]), "access", CtxForTest())[:2] == (401, {"message": "Unauthorized"})


def test_hide_groups_header_and_spoofed_header_removed():
    ctx = as_consumer(ADMIN, headers={"X-Consumer-Groups": "forged"})
    run_phase_for_test(plugin(allow=["admins"], hide_groups_header=True), "access", ctx)
    assert ctx.get_header("X-Consumer-Groups") is None
    ctx = as_consumer(LONER, headers={"X-Consumer-Groups": "admins"})
    run_phase_for_test(plugin(deny=["users"]), "access", ctx)
    assert ctx.get_header("X-Consumer-Groups") is None


def test_authenticated_groups_without_consumer():
    ctx = CtxForTest(headers={"X-Consumer-Groups": "forged"})
    ctx.authenticated_groups = ["admins"]
    assert run_phase_for_test(plugin(allow=["admins"]), "access", ctx) is None
    # Kong: groups an authentication plugin set travel as X-Authenticated-Groups
    assert ctx.get_header("X-Authenticated-Groups") == "admins"
    assert ctx.get_header("X-Consumer-Groups") is None


def test_always_use_authenticated_groups_overrides_consumer_groups():
    ctx = as_consumer(ADMIN)
    ctx.authenticated_groups = ["users"]
    assert run_phase_for_test(plugin(allow=["admins"], always_use_authenticated_groups=True), "access", ctx)[0] == 403


@pytest.mark.parametrize("config", [{}, {"allow": ["a"], "deny": ["b"]}])
def test_exactly_one_of_allow_and_deny(config):
    with pytest.raises(ValidationError):
        Acl.Config.model_validate(config)


GOLD, SILVER = {"id": "g1", "name": "gold"}, {"id": "g2", "name": "silver"}
MEMBERS = [{"id": "m1", "consumer_group": {"id": "g2"}, "consumer": {"id": LONER["id"]}},
           {"id": "m2", "consumer_group": {"id": "g1"}, "consumer": {"id": LONER["id"]}},
           {"id": "m3", "consumer_group": {"id": "g1"}, "consumer": {"id": ADMIN["id"]}}]


def group_plugin(**config):
    index = IndexForTest(consumers=[ADMIN, USER, LONER], acls=ACLS, consumer_groups=[GOLD, SILVER],
                         consumer_group_consumers=MEMBERS)
    return make_plugin_for_test(Acl, config, index)


def test_include_consumer_groups_counts_group_names_and_sends_them_upstream():
    # Kong Enterprise's include_consumer_groups: the consumer group names join the acl groups
    ctx = as_consumer(LONER)
    assert run_phase_for_test(group_plugin(allow=["gold"], include_consumer_groups=True), "access", ctx) is None
    assert ctx.get_header("X-Consumer-Groups") == "gold, silver"
    ctx = as_consumer(ADMIN)
    assert run_phase_for_test(group_plugin(allow=["gold"], include_consumer_groups=True), "access", ctx) is None
    assert ctx.get_header("X-Consumer-Groups") == "admins, staff, gold"
    ctx = as_consumer(USER)  # in no consumer group
    assert run_phase_for_test(group_plugin(allow=["gold"], include_consumer_groups=True), "access", ctx)[0] == 403
    ctx = as_consumer(LONER)
    assert run_phase_for_test(group_plugin(deny=["silver"], include_consumer_groups=True), "access", ctx)[0] == 403


def test_consumer_groups_do_not_count_without_include_consumer_groups():
    ctx = as_consumer(LONER)
    assert run_phase_for_test(group_plugin(allow=["gold"]), "access", ctx)[0] == 403


def test_a_consumer_in_no_group_is_refused_401_when_anonymous_403_when_authenticated():
    ctx = CtxForTest()
    ctx.authenticate(LONER, None)  # an anonymous consumer (an auth plugin's `anonymous`): no credential
    assert run_phase_for_test(plugin(allow=["admins"]), "access", ctx)[0] == 401
    assert run_phase_for_test(plugin(allow=["admins"]), "access", as_consumer(LONER))[0] == 403
    anonymous = CtxForTest()
    anonymous.authenticate(LONER, None)
    assert run_phase_for_test(plugin(deny=["admins"]), "access", anonymous) is None
