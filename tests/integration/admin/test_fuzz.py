"""Seeded random bodies through the Admin API: never a 5xx, always a JSON error naming what is
wrong, and the store keeps exactly what was accepted."""
from __future__ import annotations

import random

FIELDS = {
    "/services": ["name", "host", "port", "protocol", "path", "retries", "connect_timeout", "url", "tags", "enabled",
                  "tls_verify", "ca_certificates", "client_certificate"],
    "/routes": ["name", "paths", "hosts", "methods", "headers", "protocols", "strip_path", "regex_priority", "service",
                "snis", "sources", "destinations", "path_handling", "https_redirect_status_code"],
    "/upstreams": ["name", "algorithm", "hash_on", "hash_fallback", "slots", "healthchecks", "hash_on_header"],
    "/consumers": ["username", "custom_id", "tags"],
    "/plugins": ["name", "config", "route", "service", "consumer", "protocols", "enabled"],
}
PLUGINS = ["key-auth", "rate-limiting", "cors", "prometheus", "request-transformer", "nope"]


def value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(11 if depth < 2 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 80, 65536, 2**40, 10**30])
    if kind == 3:
        return rng.choice([1.5, -0.0, 1e308])
    if kind == 4:
        return rng.choice(["", "a", "/", "~/(", "http://x", "tcp://a:1", "GET", "*.test", "a" * 300, "\x00", "é",
                           "127.0.0.1", "10.0.0.0/8", "key-auth", "00000000-0000-0000-0000-000000000000"])
    if kind in (5, 6):
        return rng.choice(["/a", "a.test", "http", "https", "round-robin", "header", "1.1.1.1:80"])
    if kind in (7, 8):
        return [value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(["id", "name", "minute", "key_names", "ip", "port", "active", "x"]): value(rng, depth + 1)
            for _ in range(rng.randrange(3))}


def body(rng: random.Random, path: str) -> dict:
    out = {f: value(rng) for f in rng.sample(FIELDS[path], rng.randint(1, min(4, len(FIELDS[path]))))}
    if path == "/plugins" and rng.random() < 0.7:
        out["name"] = rng.choice(PLUGINS)
    if rng.random() < 0.1:
        out[rng.choice(["unknown", "id", "created_at"])] = value(rng)
    return out


def test_random_bodies_never_give_a_server_error_and_lose_nothing(api):
    rng = random.Random(20261206)
    before = {path: len(api.get(path + "?size=1000").json()["data"]) for path in FIELDS}
    created = {path: 0 for path in FIELDS}
    for _ in range(300):
        path = rng.choice(list(FIELDS))
        method = rng.choice(["POST", "POST", "PUT", "PATCH"])
        target = path if method == "POST" else f"{path}/fuzz-{rng.randrange(5)}"
        r = api.request(method, target, json=body(rng, path))
        assert r.status_code < 500, (method, target, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json"), r.text
        if r.status_code in (200, 201) and method == "POST":
            created[path] += 1
        elif r.status_code == 400:
            assert r.json().get("message"), r.text
    for path in FIELDS:  # every 201 is in the store; what was refused is not
        after = len(api.get(path + "?size=1000").json()["data"])
        assert after >= before[path] + created[path]
    assert sum(created.values()) > 0  # the generator also produces acceptable bodies
