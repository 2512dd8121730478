"""Plugin chain resolution: instances per config, priority order, Kong 3 scope precedence."""
from __future__ import annotations

import uuid

import pytest

from meshway.plugins import Plugin, PluginConfig
from meshway.proxy import Context, compile_plugins, run_phase


class Cfg(PluginConfig):
    v: str = ""


class A(Plugin):
    name = "a"
    priority = 10
    Config = Cfg
    inits = 0

    def __init__(self, config, index, entity):
        super().__init__(config, index, entity)
        A.inits += 1

    def access(self, ctx):
        ctx.shared.setdefault("order", []).append(("a", self.config.v))


class B(Plugin):
    name = "b"
    priority = 20
    Config = Cfg

    def access(self, ctx):
        ctx.shared.setdefault("order", []).append(("b", self.config.v))
        if self.config.v == "auth":
            ctx.authenticate({"id": "C1", "username": "u"}, None)
        if self.config.v == "stop":
            ctx.exit(403, {"message": "no"})


class Boom(Plugin):
    name = "boom"
    priority = 15
    Config = Cfg

    def access(self, ctx):
        raise ValueError("x")


AVAILABLE = {"a": A, "b": B, "boom": Boom}
R, S, C = "R", "S", "C1"


def p(name, v, route=None, service=None, consumer=None):
    ref = lambda x: {"id": x} if x else None  # noqa: E731
    return {"id": str(uuid.uuid4()), "name": name, "config": {"v": v}, "enabled": True, "protocols": None,
            "route": ref(route), "service": ref(service), "consumer": ref(consumer)}


def ctx_for_test():
    return Context("rid", "1.2.3.4", "GET", "http", "h", "/", "", [], None, None, {}, 0.0)


def run(plugins, route=R, service=S):
    pset = compile_plugins({"plugins": plugins}, AVAILABLE)
    ctx = ctx_for_test()
    run_phase(pset.chain_for(route, service), "access", ctx)
    return ctx


@pytest.mark.parametrize("scopes,winner", [
    ([(None, None, None), (None, S, None)], "service"),
    ([(None, S, None), (R, None, None)], "route"),
    ([(R, None, None), (R, S, None)], "route+service"),
    ([(R, S, None), (None, None, C)], "route+service"),
    ([(R, None, None), (None, None, C)], "consumer"),
])
def test_most_specific_instance_wins(scopes, winner):
    labels = {(None, None, None): "global", (None, S, None): "service", (R, None, None): "route",
              (R, S, None): "route+service", (None, None, C): "consumer"}
    plugins = [p("b", "auth")] + [p("a", labels[s], *s) for s in scopes]
    ctx = run(plugins)
    assert ctx.shared["order"][-1] == ("a", winner)


def test_consumer_route_service_beats_everything():
    plugins = [p("b", "auth"), p("a", "crs", R, S, C), p("a", "cr", R, None, C), p("a", "rs", R, S)]
    assert run(plugins).shared["order"] == [("b", "auth"), ("a", "crs")]


def test_without_consumer_the_consumer_instance_is_skipped():
    plugins = [p("a", "consumer", consumer=C), p("a", "global")]
    assert run(plugins).shared["order"] == [("a", "global")]
    assert run([p("a", "consumer", consumer=C)]).shared.get("order") is None


def test_priority_order_and_exit_stops_chain():
    assert run([p("a", "1"), p("b", "2")]).shared["order"] == [("b", "2"), ("a", "1")]
    ctx = run([p("a", "1"), p("b", "stop")])
    assert ctx.shared["order"] == [("b", "stop")] and ctx.exited.status == 403


def test_plugin_error_gives_500_with_request_id():
    ctx = run([p("boom", ""), p("a", "after")])
    assert ctx.exited.status == 500 and b'"request_id":"rid"' in ctx.exited.body
    assert "order" not in ctx.shared


def test_instances_created_once_per_config_and_chains_shared():
    A.inits = 0
    pset = compile_plugins({"plugins": [p("a", "g")]}, AVAILABLE)
    assert A.inits == 1
    assert pset.chain_for("r1", S) is pset.chain_for("r2", S)


def test_no_plugins_means_empty_chain():
    pset = compile_plugins({"plugins": []}, AVAILABLE)
    assert not pset.chain_for(R, S).phases


def test_unknown_plugin_is_rejected():
    with pytest.raises(ValueError, match="not installed"):
        compile_plugins({"plugins": [p("zzz", "")]}, AVAILABLE)
