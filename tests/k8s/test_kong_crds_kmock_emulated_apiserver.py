"""Kong's custom resources end to end, against kmock's EMULATED Kubernetes API server (no real
kube-apiserver can run here): KongPlugin, KongConsumer with a credential Secret, a bad KongPlugin
isolated with its Warning events. The controller, the DB-less node and the HTTP traffic are real."""
from __future__ import annotations

import base64

import httpx

from tests.k8s.conftest import eventually
from tests.k8s.test_ingress_controller_kmock_emulated_apiserver import INGRESS, SERVICE, _slice

KONG = "configuration.konghq.com/v1"


def ingress(name: str, host: str, plugins: str) -> dict:
    spec = {**INGRESS["spec"], "rules": [{**INGRESS["spec"]["rules"][0], "host": host}]}
    return {**INGRESS, "metadata": {"name": name, "namespace": "default",
                                    "annotations": {"konghq.com/plugins": plugins}}, "spec": spec}


def kong_plugin(name: str, plugin: str, config: dict) -> dict:
    return {"apiVersion": KONG, "kind": "KongPlugin", "metadata": {"name": name, "namespace": "default"},
            "plugin": plugin, "config": config}


def get(node, host: str, **headers):
    return httpx.get(node.proxy + "/echo/x", headers={"Host": host, **headers}, timeout=5)


def test_kongplugin_rate_limit_answers_429_on_the_fourth_request_kmock_emulated_apiserver(
        apiserver, controller, origins):
    node, log = controller
    apiserver.create(SERVICE)
    apiserver.create(_slice(origins[0]))
    apiserver.create(kong_plugin("three-a-minute", "rate-limiting", {"minute": 3, "policy": "local"}))
    apiserver.create(ingress("limited", "limited.example", "three-a-minute"))
    # wait for the route with its plugin (a first 200 alone could come before the plugin is there)
    eventually(lambda: get(node, "limited.example"), lambda r: "X-RateLimit-Limit-Minute" in r.headers,
               "the rate-limited route")
    codes = [get(node, "limited.example").status_code for _ in range(3)]
    assert codes[-1] == 429 and 200 in codes, (codes, log.read_text())


def test_kongconsumer_with_a_key_auth_secret_gives_401_then_200_kmock_emulated_apiserver(
        apiserver, controller, origins):
    node, log = controller
    apiserver.create(SERVICE)
    apiserver.create(_slice(origins[0]))
    apiserver.create(kong_plugin("auth", "key-auth", {}))
    apiserver.create(ingress("private", "private.example", "auth"))
    eventually(lambda: get(node, "private.example"), lambda r: r.status_code == 401, "key-auth guards the route")
    apiserver.create({"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": "alice-key", "namespace": "default",
                                   "labels": {"konghq.com/credential": "key-auth"}},
                      "data": {"key": base64.b64encode(b"alice-s3cret").decode()}})
    apiserver.create({"apiVersion": KONG, "kind": "KongConsumer",
                      "metadata": {"name": "alice", "namespace": "default",
                                   "annotations": {"kubernetes.io/ingress.class": "kong"}},
                      "username": "alice", "credentials": ["alice-key"]})
    ok = eventually(lambda: get(node, "private.example", apikey="alice-s3cret"), lambda r: r.status_code == 200,
                    "alice's key lets her in")
    assert ok.text.startswith("origin-a /echo/x"), log.read_text()
    assert get(node, "private.example", apikey="wrong").status_code == 401


def test_kongconsumer_with_an_hmac_auth_secret_signs_its_way_in_kmock_emulated_apiserver(
        apiserver, controller, origins):
    from tests.e2e.test_hmac_auth_plugin import signed_headers

    node, log = controller
    apiserver.create(SERVICE)
    apiserver.create(_slice(origins[0]))
    apiserver.create(kong_plugin("signed", "hmac-auth", {"enforce_headers": ["date", "request-line"]}))
    apiserver.create(ingress("signed", "signed.example", "signed"))
    eventually(lambda: get(node, "signed.example"), lambda r: r.status_code == 401, "hmac-auth guards the route")
    apiserver.create({"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": "alice-hmac", "namespace": "default",
                                   "labels": {"konghq.com/credential": "hmac-auth"}},
                      "stringData": {"username": "alice", "secret": "hm4c-s3cret"}})
    apiserver.create({"apiVersion": KONG, "kind": "KongConsumer",
                      "metadata": {"name": "alice", "namespace": "default",
                                   "annotations": {"kubernetes.io/ingress.class": "kong"}},
                      "username": "alice", "credentials": ["alice-hmac"]})
    ok = eventually(lambda: get(node, "signed.example", **signed_headers("/echo/x", "hm4c-s3cret")),
                    lambda r: r.status_code == 200, "alice's signature lets her in")
    assert ok.text.startswith("origin-a /echo/x"), log.read_text()
    assert get(node, "signed.example", **signed_headers("/echo/x", "not-her-secret")).status_code == 401


def test_a_bad_kongplugin_is_isolated_and_gets_a_warning_event_kmock_emulated_apiserver(
        apiserver, controller, origins):
    node, log = controller
    apiserver.create(SERVICE)
    apiserver.create(_slice(origins[0]))
    bad = apiserver.create(kong_plugin("broken", "rate-limiting", {"minute": "lots"}))
    apiserver.create(ingress("uses-broken", "broken.example", "broken"))
    apiserver.create(INGRESS)
    # the rest is applied: the good Ingress serves, the one using the bad plugin is left out
    eventually(lambda: get(node, "demo.example"), lambda r: r.status_code == 200, "the good Ingress serves")
    assert get(node, "broken.example").status_code == 404

    def events():
        return {(e["involvedObject"]["kind"], e["involvedObject"]["name"]): e for e in apiserver.list("Event")}
    seen = eventually(events, lambda ev: ("KongPlugin", "broken") in ev and ("Ingress", "uses-broken") in ev,
                      "Warning events on the KongPlugin and on the Ingress using it")
    plugin_event = seen[("KongPlugin", "broken")]
    assert plugin_event["type"] == "Warning" and plugin_event["reason"] == "KongConfigurationTranslationFailed"
    assert plugin_event["message"].startswith("config.minute: ")
    assert "KongPlugin default/broken is invalid" in seen[("Ingress", "uses-broken")]["message"]

    # fixed, the plugin applies and its Ingress serves, limited
    apiserver.patch(bad, {"config": {"minute": 5}})
    fixed = eventually(lambda: get(node, "broken.example"), lambda r: r.status_code == 200, "fixed plugin applies")
    assert fixed.headers["X-RateLimit-Limit-Minute"] == "5", log.read_text()

    # broken again the same way: the KongPlugin's Event is updated (count 2), not written a second time
    apiserver.patch(bad, {"config": {"minute": "lots"}})
    eventually(lambda: get(node, "broken.example"), lambda r: r.status_code == 404, "broken again: left out")
    again = eventually(events, lambda ev: ev[("KongPlugin", "broken")].get("count") == 2, "the event counted twice")
    on_plugin = [e for e in apiserver.list("Event") if e["involvedObject"]["name"] == "broken"]
    assert len(on_plugin) == 1 and again[("KongPlugin", "broken")]["metadata"]["name"] == plugin_event["metadata"]["name"]
    assert again[("KongPlugin", "broken")]["lastTimestamp"] >= plugin_event["firstTimestamp"]


def test_kongplugin_on_a_service_applies_to_every_ingress_routing_to_it_kmock_emulated_apiserver(
        apiserver, controller, origins):
    node, log = controller
    apiserver.create({**SERVICE, "metadata": {**SERVICE["metadata"], "annotations": {"konghq.com/plugins": "tag"}}})
    apiserver.create(_slice(origins[0]))
    apiserver.create(kong_plugin("tag", "response-transformer", {"add": {"headers": ["x-served-by:echo-svc"]}}))
    apiserver.create(kong_plugin("via", "request-transformer", {"add": {"headers": ["x-via:second"]}}))
    apiserver.create(kong_plugin("own-tag", "response-transformer", {"add": {"headers": ["x-served-by:third"]}}))
    apiserver.create(ingress("first", "first.example", ""))
    apiserver.create(ingress("second", "second.example", "via"))
    apiserver.create(ingress("third", "third.example", "own-tag"))
    for host in ("first.example", "second.example"):
        served = eventually(lambda: get(node, host), lambda r: r.status_code == 200, f"{host} served")
        assert served.headers["x-served-by"] == "echo-svc", log.read_text()
    # the Ingress's own plugins run with the Service's
    assert get(node, "second.example").headers["echo-x-via"] == "second"
    assert "echo-x-via" not in get(node, "first.example").headers
    # one instance per plugin name, the most specific (Kong's precedence): the route's replaces the service's
    third = eventually(lambda: get(node, "third.example"), lambda r: r.status_code == 200, "third served")
    assert third.headers["x-served-by"] == "third"


def test_kongconsumer_with_an_oauth2_secret_gets_a_token_kmock_emulated_apiserver(apiserver, start_controller,
                                                                                 origins):
    # oauth2 issues tokens into a database (Kong's oauth2 cannot run DB-less): a SQLite node, which the
    # controller sees refuse the plain push and then gets its tagged push
    node, log = start_controller(database="sqlite")
    apiserver.create(SERVICE)
    apiserver.create(_slice(origins[0]))
    apiserver.create(kong_plugin("apps", "oauth2", {"enable_client_credentials": True}))
    apiserver.create(ingress("apps", "apps.example", "apps"))
    eventually(lambda: get(node, "apps.example"), lambda r: r.status_code == 401, "oauth2 guards the route")
    apiserver.create({"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": "shop-app", "namespace": "default",
                                   "labels": {"konghq.com/credential": "oauth2"}},
                      "stringData": {"name": "shop", "client_id": "shop-id", "client_secret": "shop-s3cret",
                                     "redirect_uris": "https://shop.example/cb,https://shop.example/cb2"}})
    apiserver.create({"apiVersion": KONG, "kind": "KongConsumer",
                      "metadata": {"name": "bob", "namespace": "default",
                                   "annotations": {"kubernetes.io/ingress.class": "kong"}},
                      "username": "bob", "credentials": ["shop-app"]})

    def token():  # the token endpoint under the route's path, over HTTPS as Kong requires
        return httpx.post(node.proxy_ssl + "/echo/oauth2/token", headers={"Host": "apps.example"}, verify=False,
                          data={"grant_type": "client_credentials", "client_id": "shop-id",
                                "client_secret": "shop-s3cret"}, timeout=5)
    issued = eventually(token, lambda r: r.status_code == 200, "a token for bob's application")
    bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    ok = get(node, "apps.example", **bearer)
    assert ok.status_code == 200 and ok.text.startswith("origin-a /echo/x"), log.read_text()
    assert get(node, "apps.example", Authorization="Bearer not-a-token").status_code == 401
    [app] = httpx.get(node.admin + "/oauth2").json()["data"]
    assert app["redirect_uris"] == ["https://shop.example/cb", "https://shop.example/cb2"]


def test_kongconsumergroup_plugins_apply_to_its_members_only_kmock_emulated_apiserver(
        apiserver, controller, origins):
    node, log = controller
    apiserver.create(SERVICE)
    apiserver.create(_slice(origins[0]))
    apiserver.create(kong_plugin("auth", "key-auth", {}))
    apiserver.create(kong_plugin("gold-limit", "rate-limiting", {"minute": 4, "policy": "local"}))
    apiserver.create(ingress("members", "members.example", "auth"))
    cls = {"kubernetes.io/ingress.class": "kong"}
    group = apiserver.create({"apiVersion": "configuration.konghq.com/v1beta1", "kind": "KongConsumerGroup",
                              "metadata": {"name": "gold", "namespace": "default",
                                           "annotations": {**cls, "konghq.com/plugins": "gold-limit"}}})
    for user, groups in (("alice", ["gold"]), ("bob", [])):
        apiserver.create({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": f"{user}-key", "namespace": "default",
                                       "labels": {"konghq.com/credential": "key-auth"}},
                          "stringData": {"key": f"{user}-s3cret"}})
        apiserver.create({"apiVersion": KONG, "kind": "KongConsumer",
                          "metadata": {"name": user, "namespace": "default", "annotations": cls},
                          "username": user, "credentials": [f"{user}-key"], "consumerGroups": groups})
    alice = eventually(lambda: get(node, "members.example", apikey="alice-s3cret"),
                       lambda r: r.status_code == 200, "alice, a gold member, is let in")
    assert alice.headers.get("X-RateLimit-Limit-Minute") == "4", log.read_text()
    bob = get(node, "members.example", apikey="bob-s3cret")
    assert bob.status_code == 200 and "X-RateLimit-Limit-Minute" not in bob.headers
    # a key-auth plugin cannot be scoped to a group: the group is left out with an event, and so are
    # its members (their group's limits would not apply); the others keep working
    apiserver.patch(group, {"metadata": {"annotations": {**cls, "konghq.com/plugins": "gold-limit,auth"}}})
    eventually(lambda: get(node, "members.example", apikey="alice-s3cret"), lambda r: r.status_code == 401,
               "alice is left out with her group")
    assert get(node, "members.example", apikey="bob-s3cret").status_code == 200

    def events():
        return {(e["involvedObject"]["kind"], e["involvedObject"]["name"]): e for e in apiserver.list("Event")}
    seen = eventually(events, lambda ev: ("KongConsumerGroup", "gold") in ev and ("KongConsumer", "alice") in ev,
                      "Warning events on the group and on its member")
    assert "cannot be scoped to a consumer group" in seen[("KongConsumerGroup", "gold")]["message"]
    assert seen[("KongConsumer", "alice")]["message"].startswith(
        "consumerGroups[0]: KongConsumerGroup default/gold is invalid: ")
