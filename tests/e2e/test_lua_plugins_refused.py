"""pre-function / post-function (Kong's serverless plugins run Lua given in their config):
meshway runs no Lua, so a config naming them is refused with a 400 that names the plugin and
the field and says what to use instead (Admin API, declarative file, DB-less start, a control
plane); nothing of the refused write or file is applied."""
from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.e2e.test_hybrid_walkthrough import _cp, _dp, _eventually
from tests.e2e.test_node_lifecycle import _declarative, _origin_for_test
from tests.helpers.node import free_port

LUA = {"access": ["kong.response.exit(418)"]}


def _says_no_lua(message: str, plugin: str) -> None:
    assert f"plugin '{plugin}' is not supported" in message and "does not run Lua" in message
    assert "request-transformer" in message and "meshway.plugins" in message


def test_the_admin_api_refuses_them_naming_the_plugin(node_factory):
    node = node_factory()
    node.start()
    admin = httpx.Client(base_url=node.admin)
    assert admin.post("/services", json={"name": "s", "url": "http://127.0.0.1:9"}).status_code == 201
    for path, plugin in (("/plugins", "pre-function"), ("/services/s/plugins", "post-function")):
        r = admin.post(path, json={"name": plugin, "config": LUA})
        assert r.status_code == 400, r.text
        _says_no_lua(r.json()["fields"]["name"], plugin)
    assert admin.get("/plugins").json()["data"] == []


def test_a_declarative_file_with_them_is_refused_whole(node_factory):
    origin = _origin_for_test()
    node = node_factory(database="off")
    node.start()
    try:
        ok = httpx.post(node.admin + "/config", json={"config": _declarative(origin.port, "/a")})
        assert ok.status_code == 201, ok.text
        config = {"_format_version": "3.0",
                  "services": [{"name": "b", "url": f"http://127.0.0.1:{origin.port}",
                                "routes": [{"name": "rb", "paths": ["/b"]}]}],
                  "plugins": [{"name": "cors"}, {"name": "post-function", "config": LUA}]}
        refused = httpx.post(node.admin + "/config", json={"config": json.dumps(config)})
        assert refused.status_code == 400, refused.text
        body = refused.json()
        assert body["name"] == "invalid declarative configuration", body
        assert list(body["fields"]) == ["plugins[1].name"]
        _says_no_lua(body["fields"]["plugins[1].name"], "post-function")
        assert body["message"].startswith("declarative config is invalid: plugins[1].name: plugin 'post-function'")
        # nothing of the refused file: the previous config keeps serving, /b was not added
        assert httpx.get(node.proxy + "/a/x").text == "origin saw /x"
        assert httpx.get(node.proxy + "/b/x").status_code == 404
    finally:
        origin.stop()


def test_a_node_does_not_start_on_a_file_that_uses_them_and_config_parse_says_why(node_factory, tmp_path):
    decl = tmp_path / "serverless.yml"
    decl.write_text('_format_version: "3.0"\nservices:\n- name: s\n  url: http://127.0.0.1:9\n'
                    '  plugins:\n  - name: pre-function\n    config:\n      access: ["return"]\n')
    node = node_factory(database="off", declarative_config=str(decl))
    result = node.start(check=False)
    assert result.returncode == 1
    assert "services[0].plugins[0].name" in result.stderr
    _says_no_lua(result.stderr, "pre-function")
    parsed = node.cli("config", "parse", str(decl))
    assert parsed.returncode != 0 and "plugin 'pre-function' is not supported" in parsed.stdout + parsed.stderr


@pytest.mark.postgres
def test_a_control_plane_refuses_them_and_its_data_plane_keeps_serving(node_factory, postgres_db, tmp_path):
    cert = (str(tmp_path / "cluster.crt"), str(tmp_path / "cluster.key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", cert[1],
                    "-out", cert[0], "-days", "2", "-nodes", "-subj", "/CN=kong_clustering/"], check=True, capture_output=True)
    cluster_port = free_port()
    cp = _cp(node_factory, postgres_db, cert, cluster_port)
    assert cp.cli("migrations", "bootstrap").returncode == 0
    cp.start()
    dp = _dp(node_factory, "dp", cert, cluster_port)
    dp.start()
    origin = _origin_for_test()
    try:
        admin = httpx.Client(base_url=cp.admin)
        assert admin.post("/services", json={"name": "s", "url": f"http://127.0.0.1:{origin.port}"}).status_code == 201
        assert admin.post("/services/s/routes", json={"paths": ["/a"]}).status_code == 201
        r = admin.post("/services/s/plugins", json={"name": "pre-function", "config": LUA})
        assert r.status_code == 400, r.text
        _says_no_lua(r.json()["fields"]["name"], "pre-function")
        _eventually(lambda: httpx.get(dp.proxy + "/a/x").text == "origin saw /x", what="the data plane serves /a")
        assert admin.get("/plugins").json()["data"] == []
    finally:
        origin.stop()
