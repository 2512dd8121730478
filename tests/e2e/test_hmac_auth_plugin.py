"""hmac-auth end to end through `meshway start`: traditional (Admin API credentials, nested and
top-level endpoints, 400s naming the field), DB-less (`hmacauth_credentials` under a consumer in
the declarative file) and hybrid (written on the control plane, enforced by the data plane)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from email.utils import formatdate

import httpx

from tests.e2e.auth_for_test import EchoOriginForTest, eventually_for_test, hybrid_pair_for_test


def signed_headers(path: str, secret: str, body: bytes = b"", user: str = "alice", method: str = "GET") -> dict:
    date = formatdate(usegmt=True)
    digest = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    text = f"date: {date}\n{method} {path} HTTP/1.1\ndigest: {digest}"
    signature = base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()
    return {"Date": date, "Digest": digest, "Authorization":
            f'hmac username="{user}", algorithm="hmac-sha256", headers="date request-line digest", signature="{signature}"'}


def check_proxy(proxy: str, secret: str) -> None:
    with httpx.Client(base_url=proxy) as client:
        ok = client.post("/signed/echo?x=1", content=b"payload", headers=signed_headers("/signed/echo?x=1", secret, b"payload", method="POST"))
        assert ok.status_code == 200, ok.text
        seen = ok.json()["headers"]
        assert seen["x-consumer-username"] == "alice" and seen["x-credential-identifier"] == "alice"
        assert "authorization" not in seen  # hide_credentials
        tampered = client.post("/signed/echo?x=1", content=b"other", headers=signed_headers("/signed/echo?x=1", secret, b"payload", method="POST"))
        assert (tampered.status_code, tampered.json()) == (401, {"message": "HMAC signature does not match"})
        assert tampered.headers["www-authenticate"] == "hmac"
        wrong = client.get("/signed/echo", headers=signed_headers("/signed/echo", "not-the-secret"))
        assert wrong.status_code == 401
        bare = client.get("/signed/echo")
        assert (bare.status_code, bare.json()) == (401, {"message": "Unauthorized"})
        huge = client.get("/signed/echo", headers={"Date": formatdate(usegmt=True), "Authorization": 'hmac username="' + "x" * 60000})
        assert huge.status_code in (400, 401, 431)
        assert client.get("/open/echo").status_code == 200  # the plugin is on the other route only


PLUGIN_CONFIG = {"hide_credentials": True, "validate_request_body": True, "enforce_headers": ["date", "request-line"]}


def test_traditional_admin_api_and_proxy(node_factory):
    origin = EchoOriginForTest()
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    for name in ("signed", "open"):
        assert admin.post("/services/s/routes", json={"name": name, "paths": [f"/{name}"]}).status_code == 201
    bad = admin.post("/routes/signed/plugins", json={"name": "hmac-auth", "config": {"algorithms": ["md5"]}})
    assert bad.status_code == 400 and "algorithms" in bad.json()["fields"]["config"], bad.text
    bad = admin.post("/routes/signed/plugins", json={"name": "hmac-auth", "config": {"clock_skew": -1}})
    assert bad.status_code == 400 and "clock_skew" in bad.json()["fields"]["config"], bad.text
    assert admin.post("/routes/signed/plugins", json={"name": "hmac-auth", "config": PLUGIN_CONFIG}).status_code == 201
    assert admin.post("/consumers", json={"username": "alice"}).status_code == 201
    missing = admin.post("/consumers/alice/hmac-auth", json={})
    assert missing.status_code == 400 and "username" in missing.json()["fields"], missing.text
    made = admin.post("/consumers/alice/hmac-auth", data={"username": "alice"})
    assert made.status_code == 201, made.text
    cred = made.json()
    assert len(cred["secret"]) == 32 and cred["consumer"]["id"]
    assert admin.get("/hmac-auths").json()["data"][0]["username"] == "alice"
    assert admin.get("/hmac-auths/alice").json()["id"] == cred["id"]
    assert admin.get("/consumers/alice/hmac-auth/alice").json()["secret"] == cred["secret"]
    assert admin.get("/hmac-auths/alice/consumer").json()["username"] == "alice"
    assert "hmac-auth" in admin.get("/").json()["plugins"]["available_on_server"]
    check_proxy(node.proxy, cred["secret"])
    assert admin.patch(f"/hmac-auths/{cred['id']}", json={"secret": "rotated"}).status_code == 200
    check_proxy(node.proxy, "rotated")
    assert admin.delete("/consumers/alice/hmac-auth/alice").status_code == 204
    gone = httpx.get(node.proxy + "/signed/echo", headers=signed_headers("/signed/echo", "rotated"))
    assert (gone.status_code, gone.json()) == (401, {"message": "HMAC signature cannot be verified"})


def declarative(origin_url: str) -> dict:
    return {"_format_version": "3.0",
            "services": [{"name": "s", "url": origin_url, "routes": [
                {"name": "signed", "paths": ["/signed"], "plugins": [{"name": "hmac-auth", "config": PLUGIN_CONFIG}]},
                {"name": "open", "paths": ["/open"]}]}],
            "consumers": [{"username": "alice", "hmacauth_credentials": [{"username": "alice", "secret": "from-file"}]}]}


def test_dbless_declarative_credentials(node_factory, tmp_path):
    origin = EchoOriginForTest()
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(declarative(origin.url)))
    node = node_factory("dbless", database="off", declarative_config=str(path), workers="2")
    node.start()
    check_proxy(node.proxy, "from-file")
    listed = httpx.get(node.admin + "/hmac-auths").json()["data"]
    assert [(c["username"], c["secret"]) for c in listed] == [("alice", "from-file")]


def test_hybrid_data_plane_enforces_control_plane_credentials(node_factory, tmp_path):
    origin = EchoOriginForTest()
    cp, dp = hybrid_pair_for_test(node_factory, tmp_path)
    admin = httpx.Client(base_url=cp.admin)
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    assert admin.post("/services/s/routes", json={"name": "signed", "paths": ["/signed"]}).status_code == 201
    assert admin.post("/services/s/routes", json={"name": "open", "paths": ["/open"]}).status_code == 201
    assert admin.post("/routes/signed/plugins", json={"name": "hmac-auth", "config": PLUGIN_CONFIG}).status_code == 201
    assert admin.post("/consumers", json={"username": "alice"}).status_code == 201
    assert admin.post("/consumers/alice/hmac-auth", json={"username": "alice", "secret": "from-file"}).status_code == 201
    eventually_for_test(lambda: httpx.get(dp.proxy + "/signed/echo", headers=signed_headers("/signed/echo", "from-file"))
                        .json()["headers"].get("x-consumer-username") == "alice", what="data plane has the credential")
    check_proxy(dp.proxy, "from-file")
