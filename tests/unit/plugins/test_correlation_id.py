"""correlation-id: generators, keeping the client's id, echo downstream."""
from __future__ import annotations

import re
import uuid

from ctx_for_test import CtxForTest, make_plugin_for_test, run_phase_for_test

from meshway.plugins.bundled.correlation_id import PLUGIN as CorrelationId


def ids(config, n=2):
    p = make_plugin_for_test(CorrelationId, config)
    out = []
    for _ in range(n):
        ctx = CtxForTest()
        run_phase_for_test(p, "access", ctx)
        out.append(ctx.get_header(config.get("header_name", "Kong-Request-ID")))
    return out


def test_uuid_counter_default_shares_prefix_and_counts_up():
    a, b = ids({})
    prefix_a, n_a = a.split("#")
    prefix_b, n_b = b.split("#")
    uuid.UUID(prefix_a)
    assert prefix_a == prefix_b and int(n_b) == int(n_a) + 1


def test_uuid_generator():
    a, b = ids({"generator": "uuid", "header_name": "X-Req"})
    assert uuid.UUID(a) != uuid.UUID(b)


def test_tracker_generator():
    (a,) = ids({"generator": "tracker"}, 1)
    assert re.match(r"^example\.com-\d+-\d+-127\.0\.0\.1-\d+\.\d+$", a)


def test_keeps_the_clients_id_and_echoes_it():
    p = make_plugin_for_test(CorrelationId, {"echo_downstream": True})
    ctx = CtxForTest(headers={"kong-request-id": "abc"})
    run_phase_for_test(p, "access", ctx)
    run_phase_for_test(p, "response", ctx)
    assert ctx.get_header("Kong-Request-ID") == "abc"
    assert ctx.get_response_header("Kong-Request-ID") == "abc"


def test_no_echo_by_default():
    p = make_plugin_for_test(CorrelationId, {})
    ctx = CtxForTest()
    run_phase_for_test(p, "access", ctx)
    run_phase_for_test(p, "response", ctx)
    assert ctx.get_response_header("Kong-Request-ID") is None
