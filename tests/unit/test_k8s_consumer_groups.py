"""KongConsumerGroup (configuration.konghq.com/v1beta1) and KongConsumer.consumerGroups, as KIC translates
them (kongstate.FillConsumerGroups, GetCombinations): consumer groups named as their objects, memberships
as `consumer_group_consumers`, `konghq.com/plugins` on a group scoped to it (times routes and services
when the same KongPlugin is also bound to those). Checked with meshway's own declarative parser."""
from __future__ import annotations

from pathlib import Path

import yaml

from meshway.k8s._translate import Objects, translate
from meshway.model import parse_declarative
from tests.unit.test_k8s_crds import add, consumer, plugin
from tests.unit.test_k8s_translate import basic

CLASS = {"kubernetes.io/ingress.class": "kong"}
EXAMPLE = Path(__file__).parent.parent / "data" / "k8s" / "kic-examples" / "consumer-groups.yaml"


def group(name="gold", ns="default", plugins=None, annotations=None):
    meta = {"name": name, "namespace": ns, "annotations": {**CLASS, **(annotations or {})}}
    if plugins:
        meta["annotations"]["konghq.com/plugins"] = plugins
    return {"metadata": meta}


def test_groups_memberships_and_group_plugins():
    o = add(basic(), "kong_plugins", plugin(config={"minute": 5, "policy": "local"}))
    add(o, "kong_consumer_groups", group("gold", plugins="rl"))
    add(o, "kong_consumer_groups", group("silver"))
    add(o, "kong_consumers", consumer("alice", consumerGroups=["gold", "silver"]))
    add(o, "kong_consumers", consumer("bob"))
    result = translate(o)
    assert result.errors == []
    assert [g["name"] for g in result.config["consumer_groups"]] == ["gold", "silver"]
    assert "k8s-kind:KongConsumerGroup" in result.config["consumer_groups"][0]["tags"]
    members = [(m["consumer_group"], m["consumer"]) for m in result.config["consumer_group_consumers"]]
    alice = next(c for c in result.config["consumers"] if c["username"] == "alice")
    assert members == [("gold", alice["id"]), ("silver", alice["id"])]
    [p] = result.config["plugins"]
    assert p["consumer_group"] == "gold" and "consumer" not in p and "route" not in p
    snapshot = parse_declarative(result.config)
    gold = next(g for g in snapshot["consumer_groups"] if g["name"] == "gold")
    assert snapshot["plugins"][0]["consumer_group"] == {"id": gold["id"]}
    assert len(snapshot["consumer_group_consumers"]) == 2


def test_a_plugin_on_a_group_and_an_ingress_is_one_plugin_per_pair():
    o = add(basic(annotations={"konghq.com/plugins": "rl"}), "kong_plugins", plugin(config={"minute": 5}))
    add(o, "kong_consumer_groups", group("gold", plugins="rl"))
    [p] = translate(o).config["plugins"]
    assert p["consumer_group"] == "gold" and p["route"] == "default.demo.echo.example.com.80"


def test_a_missing_group_leaves_the_consumer_out_naming_it():
    o = add(Objects(), "kong_consumers", consumer("alice", consumerGroups=["nope"]))
    result = translate(o)
    assert result.config["consumers"] == [] and result.config["consumer_group_consumers"] == []
    [e] = result.errors
    assert (e.kind, e.name, e.field) == ("KongConsumer", "alice", "consumerGroups[0]")
    assert "KongConsumerGroup default/nope not found" in e.reason


def test_an_authentication_plugin_cannot_be_scoped_to_a_group():
    o = add(Objects(), "kong_plugins", plugin("ka", "key-auth"))
    add(o, "kong_consumer_groups", group("gold", plugins="ka"))
    add(o, "kong_consumers", consumer("alice", consumerGroups=["gold"]))
    result = translate(o)
    assert result.config["consumer_groups"] == [] and result.config["consumers"] == []
    assert [(e.kind, e.name) for e in result.errors] == [("KongConsumerGroup", "gold"), ("KongConsumer", "alice")]
    assert "cannot be scoped to a consumer group" in result.errors[0].reason
    assert "KongConsumerGroup default/gold is invalid: metadata.annotations" in result.errors[1].reason


def test_a_group_name_taken_in_another_namespace_is_left_out():
    o = add(Objects(), "kong_consumer_groups", group("gold", ns="a"))
    add(o, "kong_consumer_groups", group("gold", ns="b"))
    result = translate(o)
    assert [g["tags"] for g in result.config["consumer_groups"]][0].count("k8s-namespace:a") == 1
    [e] = result.errors
    assert (e.kind, e.namespace, e.field) == ("KongConsumerGroup", "b", "metadata.name")


def test_kics_consumer_groups_example():
    o = Objects()
    for doc in yaml.safe_load_all(EXAMPLE.read_text()):
        doc["metadata"].setdefault("namespace", "default")
        add(o, {"KongConsumerGroup": "kong_consumer_groups", "KongConsumer": "kong_consumers"}[doc["kind"]], doc)
    result = translate(o)
    assert result.errors == []
    snapshot = parse_declarative(result.config)
    assert [g["name"] for g in snapshot["consumer_groups"]] == ["cg1"]
    [m] = snapshot["consumer_group_consumers"]
    assert m["consumer"]["id"] == snapshot["consumers"][0]["id"]
