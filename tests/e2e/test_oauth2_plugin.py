"""oauth2 end to end through `meshway start` (2 workers, HTTPS listener): the Admin API's
`/consumers/{c}/oauth2`, `/oauth2`, `/oauth2_tokens`; the proxy's `/oauth2/token` and
`/oauth2/authorize` under the route's path; a token issued by one worker good on the other and
in the node's database (listed and revoked through `/oauth2_tokens`), expiring as configured.
DB-less and hybrid data planes, as Kong's: the tokens of the config are good, issuing one is a 500.
Two nodes on one PostgreSQL: tests/e2e/test_oauth2_database.py."""
from __future__ import annotations

import base64
import hashlib
import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.e2e.auth_for_test import EchoOriginForTest, eventually_for_test, hybrid_pair_for_test

PLUGIN = {"name": "oauth2", "config": {"enable_authorization_code": True, "enable_client_credentials": True,
                                       "enable_password_grant": True, "provision_key": "prov", "scopes": ["read", "write"],
                                       "hide_credentials": True}}
APP = {"name": "app", "client_id": "cid", "client_secret": "csecret", "redirect_uris": ["https://app.test/cb"]}


def proxy_client(node) -> httpx.Client:
    return httpx.Client(base_url=node.proxy_ssl, verify=False)


def check_flows(node) -> None:
    """client_credentials, password + refresh, authorization code with PKCE, through a real node."""
    with proxy_client(node) as client, httpx.Client(base_url=node.proxy) as plain:
        creds = {"client_id": "cid", "client_secret": "csecret"}
        assert plain.post("/api/oauth2/token", data={"grant_type": "client_credentials", **creds}).json() == {
            "error": "access_denied", "error_description": "You must use HTTPS"}
        issued = client.post("/api/oauth2/token", data={"grant_type": "client_credentials", "scope": "read", **creds})
        assert issued.status_code == 200, issued.text
        assert issued.headers["cache-control"] == "no-store"
        token = issued.json()["access_token"]
        for _ in range(4):  # new connections: both workers see the token another one issued
            with proxy_client(node) as fresh:
                seen = fresh.get("/api/echo", headers={"Authorization": f"Bearer {token}"})
                assert seen.status_code == 200, seen.text
                headers = seen.json()["headers"]
                assert headers["x-consumer-username"] == "bob" and headers["x-credential-identifier"] == "cid"
                assert headers["x-authenticated-scope"] == "read" and "authorization" not in headers
        assert plain.get(f"/api/echo?access_token={token}").status_code == 200  # only the endpoints need HTTPS
        refused = client.get("/api/echo", headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
        assert client.get("/api/oauth2/token").status_code == 405
        password = client.post("/api/oauth2/token", data={"grant_type": "password", "provision_key": "prov",
                                                          "authenticated_userid": "user-7", **creds}).json()
        renewed = client.post("/api/oauth2/token", json={"grant_type": "refresh_token",
                                                         "refresh_token": password["refresh_token"], **creds})
        assert renewed.status_code == 200, renewed.text
        assert client.get("/api/echo", headers={"Authorization": f"Bearer {password['access_token']}"}).status_code == 401
        seen = client.get("/api/echo", headers={"Authorization": f"Bearer {renewed.json()['access_token']}"}).json()
        assert seen["headers"]["x-authenticated-userid"] == "user-7"
        verifier = "a" * 43
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        authorized = client.post("/api/oauth2/authorize", data={
            "response_type": "code", "client_id": "cid", "provision_key": "prov", "authenticated_userid": "user-8",
            "scope": "write", "state": "st", "code_challenge": challenge, "code_challenge_method": "S256"})
        assert authorized.status_code == 200, authorized.text
        query = parse_qs(urlsplit(authorized.json()["redirect_uri"]).query)
        assert query["state"] == ["st"]
        exchanged = client.post("/api/oauth2/token", data={"grant_type": "authorization_code", "code": query["code"][0],
                                                           "code_verifier": verifier, **creds})
        assert exchanged.status_code == 200, exchanged.text
        again = client.post("/api/oauth2/token", data={"grant_type": "authorization_code", "code": query["code"][0],
                                                       "code_verifier": verifier, **creds})
        assert again.json()["error_description"] == "Invalid code"
        huge = client.get("/api/echo", headers={"Authorization": "Bearer " + "x" * 60000})
        assert 400 <= huge.status_code < 500
        assert client.get("/open/echo").status_code == 200


def test_traditional_admin_api_and_flows(node_factory):
    origin = EchoOriginForTest()
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    assert admin.post("/services", json={"name": "api", "url": origin.url}).status_code == 201
    assert admin.post("/services", json={"name": "open", "url": origin.url}).status_code == 201
    assert admin.post("/services/api/routes", json={"name": "api", "paths": ["/api"]}).status_code == 201
    assert admin.post("/services/open/routes", json={"name": "open", "paths": ["/open"]}).status_code == 201
    bad = admin.post("/services/api/plugins", json={"name": "oauth2", "config": {}})
    assert bad.status_code == 400 and "enable_client_credentials" in json.dumps(bad.json()["fields"]), bad.text
    bad = admin.post("/services/api/plugins", json={"name": "oauth2", "config": {"enable_password_grant": True,
                                                                                   "pkce": "maybe"}})
    assert bad.status_code == 400 and "pkce" in bad.json()["fields"]["config"], bad.text
    made = admin.post("/services/api/plugins", json=PLUGIN)
    assert made.status_code == 201 and made.json()["config"]["provision_key"] == "prov", made.text
    assert admin.post("/consumers", json={"username": "bob"}).status_code == 201
    bad = admin.post("/consumers/bob/oauth2", json={"name": "x", "redirect_uris": ["https://a.test/cb#frag"]})
    assert bad.status_code == 400 and "redirect_uris" in bad.json()["fields"], bad.text
    assert admin.post("/consumers/bob/oauth2", json={"redirect_uris": ["https://a.test/"]}).json()["fields"] == {
        "name": "required field missing"}
    cred = admin.post("/consumers/bob/oauth2", json=APP)
    assert cred.status_code == 201, cred.text
    assert cred.json()["client_type"] == "confidential" and cred.json()["hash_secret"] is False
    generated = admin.post("/consumers/bob/oauth2", data={"name": "generated", "redirect_uris[]": "https://g.test/"}).json()
    assert len(generated["client_id"]) == 32 and len(generated["client_secret"]) == 32
    assert {c["client_id"] for c in admin.get("/oauth2").json()["data"]} == {"cid", generated["client_id"]}
    assert admin.get("/oauth2/cid").json()["name"] == "app"
    assert admin.get("/consumers/bob/oauth2/cid").json()["id"] == cred.json()["id"]
    assert "oauth2" in admin.get("/").json()["plugins"]["available_on_server"]
    service_id = admin.get("/services/api").json()["id"]
    written = admin.post("/oauth2_tokens", json={"credential": {"id": cred.json()["id"]}, "service": {"id": service_id},
                                                "expires_in": 3600, "scope": "write", "authenticated_userid": "admin-made"})
    assert written.status_code == 201, written.text
    assert admin.get(f"/oauth2_tokens/{written.json()['access_token']}").json()["id"] == written.json()["id"]
    check_flows(node)
    with proxy_client(node) as client:
        seen = client.get("/api/echo", headers={"Authorization": f"Bearer {written.json()['access_token']}"}).json()
        assert seen["headers"]["x-authenticated-userid"] == "admin-made"
        assert admin.delete(f"/oauth2_tokens/{written.json()['id']}").status_code == 204
        gone = client.get("/api/echo", headers={"Authorization": f"Bearer {written.json()['access_token']}"})
        assert gone.status_code == 401
    check_issued_tokens_are_entities(node, admin, service_id)


def bearer_status_on_every_worker(node, token: str) -> set[int]:
    """Statuses over fresh connections (SO_REUSEPORT spreads them over both workers)."""
    statuses = set()
    for _ in range(8):
        with proxy_client(node) as fresh:
            statuses.add(fresh.get("/api/echo", headers={"Authorization": f"Bearer {token}"}).status_code)
    return statuses


def check_issued_tokens_are_entities(node, admin: httpx.Client, service_id: str) -> None:
    """A token the proxy issued is an `oauth2_tokens` entity: listed, fetched, and revoked by DELETE
    (every worker refuses it once the DELETE answered, though each had it cached)."""
    with proxy_client(node) as client:
        issued = client.post("/api/oauth2/token", data={"grant_type": "password", "provision_key": "prov", "scope": "write",
                                                        "authenticated_userid": "u-9", "client_id": "cid",
                                                        "client_secret": "csecret"}).json()
    listed = {t["access_token"]: t for t in admin.get("/oauth2_tokens").json()["data"]}
    entity = listed[issued["access_token"]]
    assert (entity["refresh_token"], entity["service"], entity["authenticated_userid"], entity["scope"],
            entity["expires_in"], entity["token_type"]) == (issued["refresh_token"], {"id": service_id}, "u-9", "write",
                                                            7200, "bearer")
    assert admin.get(f"/oauth2_tokens/{issued['access_token']}").json()["id"] == entity["id"]
    assert bearer_status_on_every_worker(node, issued["access_token"]) == {200}  # now cached by both workers
    assert admin.delete(f"/oauth2_tokens/{issued['access_token']}").status_code == 204
    assert bearer_status_on_every_worker(node, issued["access_token"]) == {401}
    assert admin.get(f"/oauth2_tokens/{issued['access_token']}").status_code == 404
    with proxy_client(node) as client:  # its refresh token went with it
        refreshed = client.post("/api/oauth2/token", data={"grant_type": "refresh_token", "client_id": "cid",
                                                           "client_secret": "csecret",
                                                           "refresh_token": issued["refresh_token"]})
        assert refreshed.json()["error_description"] == "Invalid refresh_token"


def test_tokens_expire_and_issued_rows_carry_kongs_ttl(node_factory):
    origin = EchoOriginForTest()
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    assert admin.post("/services", json={"name": "api", "url": origin.url}).status_code == 201
    assert admin.post("/services/api/routes", json={"name": "api", "paths": ["/api"]}).status_code == 201
    assert admin.post("/services/api/plugins", json={**PLUGIN, "config": {**PLUGIN["config"], "token_expiration": 2,
                                                                          "refresh_token_ttl": 5}}).status_code == 201
    assert admin.post("/consumers", json={"username": "bob"}).status_code == 201
    assert admin.post("/consumers/bob/oauth2", json=APP).status_code == 201
    creds = {"client_id": "cid", "client_secret": "csecret"}
    with proxy_client(node) as client:
        first = client.post("/api/oauth2/token", data={"grant_type": "password", "provision_key": "prov",
                                                       "authenticated_userid": "u", **creds}).json()
        assert first["expires_in"] == 2
        assert client.get("/api/echo", headers={"Authorization": f"Bearer {first['access_token']}"}).status_code == 200
        time.sleep(2.2)  # created_at is in whole seconds, as Kong's: 2.2 s later it is over 2 s old
        expired = client.get("/api/echo", headers={"Authorization": f"Bearer {first['access_token']}"})
        assert expired.status_code == 401 and expired.json()["error"] == "invalid_token"
        # an expired access token's refresh token still works until refresh_token_ttl (Kong's row ttl)
        second = client.post("/api/oauth2/token", data={"grant_type": "refresh_token",
                                                        "refresh_token": first["refresh_token"], **creds}).json()
        assert client.get("/api/echo", headers={"Authorization": f"Bearer {second['access_token']}"}).status_code == 200, second
        time.sleep(5.5)
        late = client.post("/api/oauth2/token", data={"grant_type": "refresh_token",
                                                      "refresh_token": second["refresh_token"], **creds})
        assert late.json()["error_description"] == "Invalid refresh_token"


def declarative(origin_url: str) -> dict:
    return {"_format_version": "3.0",
            "services": [{"name": "api", "url": origin_url, "routes": [{"name": "api", "paths": ["/api"]}],
                          "plugins": [PLUGIN]},
                         {"name": "open", "url": origin_url, "routes": [{"name": "open", "paths": ["/open"]}]}],
            "consumers": [{"username": "bob", "oauth2_credentials": [{**APP, "id": "3a5a8b3c-1111-4bbb-8ccc-000000000001"}]}],
            "oauth2_tokens": [{"credential": "3a5a8b3c-1111-4bbb-8ccc-000000000001", "service": "api", "expires_in": 0,
                               "access_token": "file-token", "authenticated_userid": "from-file"}]}


def refuses_to_issue(node) -> None:
    """Kong's oauth2 on a node without a database: every grant that writes is a 500; the checks
    before it still answer 400."""
    with proxy_client(node) as client:
        creds = {"client_id": "cid", "client_secret": "csecret"}
        for data in ({"grant_type": "client_credentials", **creds},
                     {"grant_type": "password", "provision_key": "prov", "authenticated_userid": "u", **creds}):
            refused = client.post("/api/oauth2/token", data=data)
            assert (refused.status_code, refused.json()) == (500, {"message": "An unexpected error occurred"})
        authorized = client.post("/api/oauth2/authorize", data={"response_type": "code", "client_id": "cid",
                                                                "provision_key": "prov", "authenticated_userid": "u"})
        assert authorized.status_code == 500
        bad = client.post("/api/oauth2/token", data={"grant_type": "client_credentials", "client_id": "cid",
                                                     "client_secret": "nope"})
        assert (bad.status_code, bad.json()["error"]) == (400, "invalid_client")
        assert client.get("/api/echo", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_dbless_accepts_the_tokens_of_its_file_and_issues_none(node_factory, tmp_path):
    origin = EchoOriginForTest()
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(declarative(origin.url)))
    node = node_factory("dbless", database="off", declarative_config=str(path), workers="2")
    node.start()
    for _ in range(4):
        with proxy_client(node) as client:
            seen = client.get("/api/echo", headers={"Authorization": "Bearer file-token"}).json()
            assert seen["headers"]["x-authenticated-userid"] == "from-file"
    refuses_to_issue(node)
    assert "cannot issue or refresh tokens here" in (node.prefix / "logs" / "error.log").read_text()


def test_hybrid_data_plane_accepts_control_plane_tokens_and_issues_none(node_factory, tmp_path):
    origin = EchoOriginForTest()
    cp, dp = hybrid_pair_for_test(node_factory, tmp_path)
    admin = httpx.Client(base_url=cp.admin)
    assert admin.post("/services", json={"name": "api", "url": origin.url}).status_code == 201
    assert admin.post("/services/api/routes", json={"name": "api", "paths": ["/api"]}).status_code == 201
    assert admin.post("/consumers", json={"username": "bob"}).status_code == 201
    cred = admin.post("/consumers/bob/oauth2", json=APP).json()
    assert admin.post("/services/api/plugins", json=PLUGIN).status_code == 201
    token = admin.post("/oauth2_tokens", json={"credential": {"id": cred["id"]}, "service": {"name": "api"},
                                              "expires_in": 0, "authenticated_userid": "cp-made"}).json()

    def accepted_by_every_worker():  # fresh connections reach both workers; each applies config on its own
        return (bearer_status_on_every_worker(dp, "nope") == {401}  # the plugin is there
                and bearer_status_on_every_worker(dp, token["access_token"]) == {200})
    eventually_for_test(accepted_by_every_worker, what="data plane workers have the token of the control plane")
    refuses_to_issue(dp)
    assert admin.delete(f"/oauth2_tokens/{token['id']}").status_code == 204
    eventually_for_test(lambda: bearer_status_on_every_worker(dp, token["access_token"]) == {401},
                        what="the deleted token is refused")
