"""Kong's custom resources as KIC translates them: KongPlugin / KongClusterPlugin bindings,
KongConsumer credentials from labelled Secrets, KongIngress and KongUpstreamPolicy upstream overrides."""
from __future__ import annotations

import base64

from meshway.k8s._consumers import consumer_id
from meshway.k8s._translate import translate
from meshway.model import parse_declarative
from tests.unit.test_k8s_translate import basic, svc


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plugin(name="rl", plugin_name="rate-limiting", ns="default", **extra):
    return {"metadata": {"name": name, "namespace": ns}, "plugin": plugin_name, **extra}


def consumer(name="alice", ns="default", credentials=(), annotations=None, **extra):
    return {"metadata": {"name": name, "namespace": ns,
                         "annotations": {"kubernetes.io/ingress.class": "kong", **(annotations or {})}},
            "username": name, "credentials": list(credentials), **extra}


def secret(name, cred_type, ns="default", **data):
    return {"metadata": {"name": name, "namespace": ns, "labels": {"konghq.com/credential": cred_type}},
            "data": {k: b64(v) for k, v in data.items()}}


def add(o, kind, obj):
    getattr(o, kind)[(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj
    return o


def test_kongplugin_on_an_ingress_binds_to_its_routes():
    o = add(basic(annotations={"konghq.com/plugins": "rl"}), "kong_plugins",
            plugin(config={"minute": 3, "policy": "local"}))
    result = translate(o)
    assert result.errors == []
    [p] = result.config["plugins"]
    assert p["name"] == "rate-limiting" and p["config"] == {"minute": 3, "policy": "local"}
    assert p["route"] == "default.demo.echo.example.com.80" and "service" not in p
    assert "k8s-kind:KongPlugin" in p["tags"]
    parse_declarative(result.config)


def test_kongplugin_on_a_service_binds_to_its_kong_services():
    o = basic()
    o.services[("default", "echo")] = svc(annotations={"konghq.com/plugins": "rl"})
    add(o, "kong_plugins", plugin(config={"minute": 3}))
    [p] = translate(o).config["plugins"]
    assert p["service"] == "default.echo.80" and "route" not in p


def test_a_cluster_plugin_is_found_when_no_kongplugin_has_the_name():
    o = add(basic(annotations={"konghq.com/plugins": "shared"}), "kong_cluster_plugins",
            {"metadata": {"name": "shared"}, "plugin": "cors", "config": {"origins": ["*"]}})
    [p] = translate(o).config["plugins"]
    assert p["name"] == "cors" and "k8s-kind:KongClusterPlugin" in p["tags"]


def test_global_cluster_plugin_needs_the_label_and_the_class():
    o = basic()
    add(o, "kong_cluster_plugins", {"metadata": {"name": "g", "labels": {"global": "true"},
                                                "annotations": {"kubernetes.io/ingress.class": "kong"}},
                                   "plugin": "correlation-id"})
    add(o, "kong_cluster_plugins", {"metadata": {"name": "other-class", "labels": {"global": "true"},
                                                "annotations": {"kubernetes.io/ingress.class": "nginx"}},
                                   "plugin": "cors"})
    [p] = translate(o).config["plugins"]
    assert p["name"] == "correlation-id" and not {"route", "service", "consumer"} & set(p)


def test_a_plugin_on_a_consumer_and_a_route_is_one_plugin_per_pair():
    o = add(basic(annotations={"konghq.com/plugins": "rl"}), "kong_plugins", plugin(config={"minute": 3}))
    add(o, "kong_consumers", consumer(annotations={"konghq.com/plugins": "rl"}))
    [p] = translate(o).config["plugins"]
    assert p["route"] == "default.demo.echo.example.com.80"
    assert p["consumer"] == consumer_id(o.kong_consumers[("default", "alice")])
    parse_declarative(translate(o).config)


def test_instance_name_gets_a_suffix_per_binding():
    o = basic(annotations={"konghq.com/plugins": "rl"})
    o.services[("default", "echo")] = svc(annotations={"konghq.com/plugins": "rl"})
    add(o, "kong_plugins", plugin(config={"minute": 3}, instance_name="limit"))
    names = sorted(p["instance_name"] for p in translate(o).config["plugins"])
    assert len(names) == 2 and len(set(names)) == 2 and all(n.startswith("limit-") and len(n) == 15 for n in names)


def test_config_from_a_secret():
    o = add(basic(annotations={"konghq.com/plugins": "rl"}), "kong_plugins",
            plugin(configFrom={"secretKeyRef": {"name": "rl-conf", "key": "config"}}))
    o.secrets[("default", "rl-conf")] = {"metadata": {"name": "rl-conf", "namespace": "default"},
                                         "data": {"config": b64("minute: 7\n")}}
    assert translate(o).config["plugins"][0]["config"] == {"minute": 7}


def test_an_invalid_plugin_leaves_out_its_referrers_and_is_named_with_its_field():
    o = add(basic(annotations={"konghq.com/plugins": "rl"}), "kong_plugins", plugin(config={"minute": "lots"}))
    result = translate(o)
    assert result.config["services"] == [] and result.config["plugins"] == []
    errors = {(e.kind, e.name): e for e in result.errors}
    assert errors[("KongPlugin", "rl")].field == "config.minute"
    ingress_error = errors[("Ingress", "demo")]
    assert ingress_error.field == "metadata.annotations[konghq.com/plugins]"
    assert "KongPlugin default/rl is invalid: config.minute" in ingress_error.reason


def test_a_missing_plugin_leaves_out_the_referrer():
    result = translate(basic(annotations={"konghq.com/plugins": "nope"}))
    assert result.config["services"] == []
    assert "referenced KongPlugin or KongClusterPlugin 'nope' does not exist" in str(result.errors[0])


def test_consumer_with_credentials_from_labelled_secrets():
    o = basic()
    add(o, "kong_consumers", consumer(credentials=["alice-key", "alice-basic", "alice-acl", "alice-legacy",
                                                   "alice-hmac", "alice-hmac-legacy"]))
    add(o, "secrets", secret("alice-key", "key-auth", key="s3cret"))
    add(o, "secrets", secret("alice-hmac", "hmac-auth", username="alice", secret="hm4c"))
    add(o, "secrets", secret("alice-hmac-legacy", "hmacauth_credential", username="alice-old", secret="x"))
    add(o, "secrets", secret("alice-basic", "basic-auth", username="alice", password="pw"))
    add(o, "secrets", secret("alice-acl", "acl", group="admins"))
    add(o, "secrets", secret("alice-legacy", "keyauth_credential", key="old"))
    result = translate(o)
    assert result.errors == []
    [c] = result.config["consumers"]
    assert c["username"] == "alice"
    assert [k["key"] for k in c["keyauth_credentials"]] == ["s3cret", "old"]
    assert c["basicauth_credentials"][0]["username"] == "alice"
    assert c["acls"][0]["group"] == "admins"
    assert [(h["username"], h["secret"]) for h in c["hmacauth_credentials"]] == [("alice", "hm4c"), ("alice-old", "x")]
    parse_declarative(result.config)


def test_consumer_needs_the_class_annotation():
    o = basic()
    c = consumer()
    c["metadata"]["annotations"] = {}
    add(o, "kong_consumers", c)
    assert translate(o).config["consumers"] == []


def test_a_bad_credential_is_named_and_the_consumer_stays():
    o = basic()
    add(o, "kong_consumers", consumer(credentials=["unlabelled", "mtls"]))
    o.secrets[("default", "unlabelled")] = {"metadata": {"name": "unlabelled", "namespace": "default"}, "data": {}}
    add(o, "secrets", secret("mtls", "mtls-auth", subject_name="a"))
    result = translate(o)
    assert len(result.config["consumers"]) == 1
    assert [e.field for e in result.errors] == ["credentials[0]", "credentials[1]"]
    assert "lacks konghq.com/credential label" in result.errors[0].reason
    assert "not supported by meshway: 'mtls-auth'" in result.errors[1].reason


def test_a_key_claimed_twice_keeps_the_first_consumer():
    o = basic()
    add(o, "kong_consumers", consumer("alice", credentials=["k1"]))
    add(o, "kong_consumers", consumer("bob", credentials=["k2"]))
    add(o, "secrets", secret("k1", "key-auth", key="same"))
    add(o, "secrets", secret("k2", "key-auth", key="same"))
    result = translate(o)
    assert [c["username"] for c in result.config["consumers"]] == ["alice"]
    assert result.errors[0].name == "bob" and "already belongs to KongConsumer default/alice" in result.errors[0].reason


def test_oauth2_credentials_as_kic_reads_them():
    o = basic()
    add(o, "kong_consumers", consumer(credentials=["app", "hashed", "bad-hash"]))
    def app(secret_name, **data):  # `name` is a field of the credential here
        return add(o, "secrets", {**secret(secret_name, "oauth2"), "data": {k: b64(v) for k, v in data.items()}})
    app("app", name="shop", client_id="shop-id", client_secret="shop-secret",
        redirect_uris="https://shop.example/cb,https://shop.example/cb2")
    app("hashed", name="other", client_id="other-id", client_secret="s", hash_secret="true")
    app("bad-hash", name="x", client_id="x-id", hash_secret="maybe")
    result = translate(o)
    [c] = result.config["consumers"]
    apps = {a["client_id"]: a for a in c["oauth2_credentials"]}
    assert set(apps) == {"shop-id", "other-id"}
    assert apps["shop-id"]["redirect_uris"] == ["https://shop.example/cb", "https://shop.example/cb2"]
    assert (apps["shop-id"]["name"], apps["shop-id"]["client_secret"]) == ("shop", "shop-secret")
    assert apps["other-id"]["hash_secret"] is True
    [error] = result.errors
    assert error.field == "credentials[2]" and "hash_secret is not true or false" in error.reason
    parse_declarative(result.config)


def test_an_hmac_auth_username_claimed_twice_keeps_the_first_consumer():
    o = basic()
    add(o, "kong_consumers", consumer("alice", credentials=["h1"]))
    add(o, "kong_consumers", consumer("bob", credentials=["h2"]))
    add(o, "secrets", secret("h1", "hmac-auth", username="shared", secret="a"))
    add(o, "secrets", secret("h2", "hmac-auth", username="shared", secret="b"))
    result = translate(o)
    assert [c["username"] for c in result.config["consumers"]] == ["alice"]
    assert result.errors[0].name == "bob" and "already belongs to KongConsumer default/alice" in result.errors[0].reason


def test_kongingress_upstream_override_then_upstream_policy_wins():
    o = basic()
    o.services[("default", "echo")] = svc(annotations={"konghq.com/override": "ki",
                                                       "konghq.com/upstream-policy": "pol"})
    add(o, "kong_ingresses", {"metadata": {"name": "ki", "namespace": "default"},
                              "upstream": {"algorithm": "least-connections", "slots": 100},
                              "proxy": {"retries": 1}})
    add(o, "kong_upstream_policies", {"metadata": {"name": "pol", "namespace": "default"},
                                      "spec": {"algorithm": "consistent-hashing", "hashOn": {"header": "x-user"},
                                               "healthchecks": {"passive": {"unhealthy": {"httpFailures": 3}}}}})
    result = translate(o)
    assert result.errors == []
    [u] = result.config["upstreams"]
    assert (u["algorithm"], u["slots"], u["hash_on"], u["hash_on_header"]) == \
        ("consistent-hashing", 100, "header", "x-user")
    assert u["healthchecks"] == {"passive": {"unhealthy": {"http_failures": 3}}}
    parse_declarative(result.config)


def test_a_missing_upstream_policy_names_the_service():
    o = basic()
    o.services[("default", "echo")] = svc(annotations={"konghq.com/upstream-policy": "nope"})
    [error] = translate(o).errors
    assert "Service default/echo: metadata.annotations[konghq.com/upstream-policy]" in error.reason


def test_config_patches_add_secret_values_at_their_json_pointers():
    o = add(basic(annotations={"konghq.com/plugins": "rl"}), "kong_plugins",
            plugin(config={"policy": "local"}, configPatches=[
                {"path": "/minute", "valueFrom": {"secretKeyRef": {"name": "limits", "key": "minute"}}}]))
    o.secrets[("default", "limits")] = {"metadata": {"name": "limits", "namespace": "default"},
                                        "data": {"minute": b64("7")}}
    result = translate(o)
    assert result.errors == []
    assert result.config["plugins"][0]["config"] == {"policy": "local", "minute": 7}
    assert o.kong_plugins[("default", "rl")]["config"] == {"policy": "local"}  # not modified


def grant(ns, from_kind, from_group, from_ns, to_kind, to_group, to_name=None):
    to = {"group": to_group, "kind": to_kind, **({"name": to_name} if to_name else {})}
    return {"metadata": {"name": f"g-{from_ns}", "namespace": ns},
            "spec": {"from": [{"group": from_group, "kind": from_kind, "namespace": from_ns}], "to": [to]}}


def test_a_plugin_of_another_namespace_needs_a_reference_grant():
    o = basic()
    o.services[("default", "echo")] = svc(annotations={"konghq.com/plugins": "shared:rl"})
    add(o, "kong_plugins", plugin(ns="shared", config={"minute": 3}))
    refused = translate(o)
    assert refused.config["services"] == []
    assert "no ReferenceGrant in namespace 'shared' lets Service default/echo use KongPlugin shared/rl" \
        in refused.errors[0].reason
    add(o, "reference_grants", grant("shared", "Service", "", "default", "KongPlugin", "configuration.konghq.com",
                                     "rl"))
    result = translate(o)
    assert result.errors == []
    [p] = result.config["plugins"]
    assert p["service"] == "default.echo.80" and "k8s-namespace:shared" in p["tags"]
