"""oauth2 on two traditional nodes sharing one real PostgreSQL, as Kong's nodes share its database:
a token or code issued by one node's proxy is good on the other's, both Admin APIs list it, a
refresh on one retires the token on the other, and a DELETE through one node's Admin API is
refused by both (the other hears of it through PostgreSQL's NOTIFY or its next poll)."""
from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from tests.e2e.auth_for_test import EchoOriginForTest, eventually_for_test
from tests.e2e.test_oauth2_plugin import APP, PLUGIN, bearer_status_on_every_worker, proxy_client

pytestmark = pytest.mark.postgres
CREDS = {"client_id": "cid", "client_secret": "csecret"}


def rows_for_test(postgres_db, sql: str) -> list[tuple]:
    with psycopg.connect(host=postgres_db.host, port=postgres_db.port, user=postgres_db.user,
                         password=postgres_db.password or None, dbname=postgres_db.name) as conn:
        return conn.execute(sql).fetchall()


def test_two_nodes_share_issued_tokens_and_codes(node_factory, postgres_db):
    origin = EchoOriginForTest()
    a = node_factory("a", workers="2", **postgres_db.settings())
    b = node_factory("b", workers="2", **postgres_db.settings())
    assert a.cli("migrations", "bootstrap").returncode == 0
    a.start()
    b.start()
    admin_a, admin_b = httpx.Client(base_url=a.admin), httpx.Client(base_url=b.admin)
    assert admin_a.post("/services", json={"name": "api", "url": origin.url}).status_code == 201
    assert admin_a.post("/services/api/routes", json={"name": "api", "paths": ["/api"]}).status_code == 201
    assert admin_a.post("/consumers", json={"username": "bob"}).status_code == 201
    assert admin_a.post("/consumers/bob/oauth2", json=APP).status_code == 201
    assert admin_a.post("/services/api/plugins", json=PLUGIN).status_code == 201
    eventually_for_test(lambda: bearer_status_on_every_worker(b, "nope") == {401}, what="b has the plugin")

    with proxy_client(a) as client:
        issued = client.post("/api/oauth2/token", data={"grant_type": "password", "provision_key": "prov",
                                                        "authenticated_userid": "u-1", **CREDS}).json()
    assert bearer_status_on_every_worker(b, issued["access_token"]) == {200}
    for admin in (admin_a, admin_b):
        assert admin.get(f"/oauth2_tokens/{issued['access_token']}").json()["authenticated_userid"] == "u-1"
    (ttl,), = rows_for_test(postgres_db, "SELECT ttl - created_at FROM oauth2_tokens WHERE body::json->>'authenticated_userid' = 'u-1'")
    assert ttl == 1209600  # Kong's row ttl: refresh_token_ttl

    with proxy_client(b) as client:  # refreshed on b: a refuses the old access token, takes the new one
        renewed = client.post("/api/oauth2/token", data={"grant_type": "refresh_token",
                                                         "refresh_token": issued["refresh_token"], **CREDS}).json()
    assert bearer_status_on_every_worker(a, renewed["access_token"]) == {200}
    eventually_for_test(lambda: bearer_status_on_every_worker(a, issued["access_token"]) == {401}, timeout=10,
                        what="a refuses the refreshed token once its cache entry ages out")

    verifier = "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    with proxy_client(a) as client:
        authorized = client.post("/api/oauth2/authorize", data={
            "response_type": "code", "client_id": "cid", "provision_key": "prov", "authenticated_userid": "u-2",
            "code_challenge": challenge, "code_challenge_method": "S256"}).json()
    code = parse_qs(urlsplit(authorized["redirect_uri"]).query)["code"][0]
    assert rows_for_test(postgres_db, "SELECT count(*) FROM oauth2_authorization_codes") == [(1,)]
    with proxy_client(b) as client:
        exchanged = client.post("/api/oauth2/token", data={"grant_type": "authorization_code", "code": code,
                                                           "code_verifier": verifier, **CREDS})
        assert exchanged.status_code == 200, exchanged.text
    with proxy_client(a) as client:
        again = client.post("/api/oauth2/token", data={"grant_type": "authorization_code", "code": code,
                                                       "code_verifier": verifier, **CREDS})
        assert again.json()["error_description"] == "Invalid code"

    token = exchanged.json()["access_token"]
    assert bearer_status_on_every_worker(a, token) == {200} and bearer_status_on_every_worker(b, token) == {200}
    assert admin_a.delete(f"/oauth2_tokens/{token}").status_code == 204
    assert bearer_status_on_every_worker(a, token) == {401}  # this node: before the DELETE answered
    eventually_for_test(lambda: bearer_status_on_every_worker(b, token) == {401}, timeout=10,
                        what="b refuses the token deleted through a's Admin API")
    assert admin_b.get(f"/oauth2_tokens/{token}").status_code == 404
