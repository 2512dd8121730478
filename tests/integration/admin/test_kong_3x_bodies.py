"""Admin API bodies as Kong 3.x answers them: whole numbers as integers, `url` winning over the
fields beside it, consumer-scoped auth plugins refused, rate-limiting's redis record by form."""
from __future__ import annotations

import uuid


def _name() -> str:
    return "n" + uuid.uuid4().hex[:10]


def test_plugin_numbers_come_back_as_integers(api):
    created = api.post("/plugins", data={"name": "rate-limiting", "config.minute": "5", "config.hour": "100",
                                         "config.second": "0.5", "instance_name": _name()})
    assert created.status_code == 201, created.text
    text = api.get(f"/plugins/{created.json()['id']}").text
    assert '"minute":5,' in text.replace(" ", "") and '"hour":100,' in text.replace(" ", "")
    assert '"second":0.5,' in text.replace(" ", "")
    assert api.delete(f"/plugins/{created.json()['id']}").status_code == 204


def test_url_wins_over_protocol_given_beside_it(api):
    svc = api.post("/services", json={"name": _name(), "url": "http://a.test:81/p", "protocol": "ws", "port": 9})
    assert svc.status_code == 201 and (svc.json()["protocol"], svc.json()["port"]) == ("http", 81)


def test_key_auth_on_a_consumer_is_refused_as_in_kong(api):
    consumer = api.post("/consumers", json={"username": _name()}).json()
    r = api.post(f"/consumers/{consumer['id']}/plugins", json={"name": "key-auth"})
    assert r.status_code == 400 and r.json()["fields"] == {"consumer": "value must be null"}, r.text


def test_redis_record_by_form_and_patch(api):
    created = api.post("/plugins", data={"name": "rate-limiting", "config.minute": "5", "config.policy": "redis",
                                         "config.redis.host": "r.test", "config.redis.port": "6380",
                                         "instance_name": _name()})
    assert created.status_code == 201, created.text
    assert created.json()["config"]["redis"]["port"] == 6380
    patched = api.patch(f"/plugins/{created.json()['id']}", json={"config": {"redis_host": "s.test"}})
    assert patched.status_code == 400 and "redis_host = s.test vs redis.host = r.test" in patched.text
    patched = api.patch(f"/plugins/{created.json()['id']}", json={"config": {"redis": {"host": "s.test"}}})
    assert patched.status_code == 200 and patched.json()["config"]["redis"] == {
        **created.json()["config"]["redis"], "host": "s.test"}
    assert api.delete(f"/plugins/{created.json()['id']}").status_code == 204
