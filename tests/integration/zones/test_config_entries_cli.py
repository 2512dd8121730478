"""`meshway config write|read|list|delete` against a real control plane node, with the reference
document's files; the zone's name in `GET /` and `meshway get zones`."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from meshway.zones import KINDS
from tests.helpers.node import MESHWAY, NodeForTest, clean_env, node_factory  # noqa: F401

DATA = Path(__file__).parents[2] / "data" / "zones"


def meshway(node, *args: str, stdin: str | None = None, single_dash: bool = False) -> subprocess.CompletedProcess:
    where = ["-http-addr", node.admin] if single_dash else ["--cp-address", node.admin]
    return subprocess.run([MESHWAY, *args, *where], input=stdin, capture_output=True, text=True, env=clean_env(),
                          timeout=60)


@pytest.fixture(scope="module")
def onprem_cp(tmp_path_factory):
    """One control plane for the module (starting a node per test costs seconds on a shared machine)."""
    node = NodeForTest(tmp_path_factory.mktemp("zones"), "onprem-cp", {"datacenter": "onprem"})
    node.start()
    yield node
    node.stop()


@pytest.fixture
def cp(onprem_cp):
    """The module's control plane, emptied of config entries and data planes before each test."""
    for kind in KINDS:
        for entry in httpx.get(f"{onprem_cp.admin}/v1/config/{kind}").json():
            httpx.delete(f"{onprem_cp.admin}/v1/config/{kind}/{entry['Name']}")
    for dp in httpx.get(f"{onprem_cp.admin}/dataplanes").json()["items"]:
        httpx.delete(f"{onprem_cp.admin}/meshes/{dp['mesh']}/dataplanes/{dp['name']}")
    return onprem_cp


def test_the_documents_files_written_read_listed_deleted(cp, tmp_path):
    for name in ("global_defaults.hcl", "api_resolver.hcl"):  # the tutorial: cd l7_config; consul config write ...
        shutil.copy(DATA / name, tmp_path / name)
    written = subprocess.run([MESHWAY, "config", "write", "global_defaults.hcl", "--cp-address", cp.admin],
                             cwd=tmp_path, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert (written.returncode, written.stdout) == (0, "Config entry written: proxy-defaults/global\n"), written.stderr
    written = meshway(cp, "config", "write", str(tmp_path / "api_resolver.hcl"), single_dash=True)
    assert (written.returncode, written.stdout) == (0, "Config entry written: service-resolver/api\n"), written.stderr

    read = meshway(cp, "config", "read", "-kind", "proxy-defaults", "-name", "global")
    assert read.returncode == 0, read.stderr
    shown = json.loads(read.stdout)
    assert list(shown) == ["Kind", "Name", "Config", "MeshGateway", "Expose", "CreateIndex", "ModifyIndex"]
    assert shown["Config"] == {"protocol": "http"} and shown["MeshGateway"] == {"Mode": "local"}
    assert read.stdout.startswith('{\n    "Kind": "proxy-defaults",\n    "Name": "global",\n')  # Consul's indent
    read = meshway(cp, "config", "read", "--kind", "service-resolver", "--name", "api", single_dash=True)
    resolver = json.loads(read.stdout)
    assert {k: resolver[k] for k in ("Kind", "Name", "Redirect")} == {
        "Kind": "service-resolver", "Name": "api", "Redirect": {"Service": "api", "Datacenter": "cloud"}}
    assert resolver["ModifyIndex"] > shown["ModifyIndex"]

    listed = meshway(cp, "config", "list", "-kind", "service-resolver")
    assert (listed.returncode, listed.stdout) == (0, "api\n")
    assert meshway(cp, "config", "list", "-kind", "service-defaults").stdout == ""

    deleted = meshway(cp, "config", "delete", "-kind", "service-resolver", "-name", "api")
    assert (deleted.returncode, deleted.stdout) == (0, "Config entry deleted: service-resolver/api\n")
    gone = meshway(cp, "config", "read", "-kind", "service-resolver", "-name", "api")
    assert gone.returncode == 1
    assert gone.stderr.strip() == ('Error reading config entry "service-resolver" / "api": Unexpected response code: '
                                   '404 (Config entry not found for "service-resolver" / "api")')
    assert meshway(cp, "config", "list", "-kind", "service-resolver").stdout == ""


def test_stdin_yaml_json_and_snake_case(cp):
    yaml_text = "kind: service-defaults\nname: api\nprotocol: HTTP\nmesh_gateway:\n  mode: remote\n"
    assert meshway(cp, "config", "write", "-", stdin=yaml_text).stdout == "Config entry written: service-defaults/api\n"
    json_text = json.dumps({"Kind": "service-intentions", "Name": "api",
                            "Sources": [{"Name": "*", "Action": "deny"}, {"Name": "web", "Action": "allow"}]})
    assert meshway(cp, "config", "write", "-", stdin=json_text).returncode == 0
    defaults = json.loads(meshway(cp, "config", "read", "-kind", "service-defaults", "-name", "api").stdout)
    assert defaults["Protocol"] == "http" and defaults["MeshGateway"] == {"Mode": "remote"}
    sources = json.loads(meshway(cp, "config", "read", "-kind", "service-intentions", "-name", "api").stdout)["Sources"]
    assert [(s["Name"], s["Action"], s["Precedence"], s["Type"]) for s in sources] == [
        ("web", "allow", 9, "consul"), ("*", "deny", 8, "consul")]


BAD = [
    ('kind = "service-resolver"\nname = "api"\nredirect { service = "api" datacenter = "cloud" }\n'
     'failover { "*" { datacenters = ["onprem"] } }\n',
     "Error writing config entry service-resolver/api: Unexpected response code: 400 "
     "(Redirect and Failover cannot both be set)"),
    ('kind = "service-resolver"\nname = "api"\nredirect {}\n',
     "Error writing config entry service-resolver/api: Unexpected response code: 400 (Redirect is empty)"),
    ('kind = "service-resolver"\nname = "api"\nredirect { service_subset = "v1" }\nsubsets { v1 { filter = "x == y" } }\n',
     "Error writing config entry service-resolver/api: Unexpected response code: 400 "
     "(Redirect.ServiceSubset defined without Redirect.Service)"),
    ('kind = "service-resolver"\nname = "api"\ndefault_subset = "v2"\n',
     'Error writing config entry service-resolver/api: Unexpected response code: 400 '
     '(DefaultSubset "v2" is not a valid subset)'),
    ('kind = "service-resolver"\nname = "api"\nfailover { v9 { datacenters = ["cloud"] } }\n',
     'Error writing config entry service-resolver/api: Unexpected response code: 400 '
     '(Bad Failover["v9"]: not a valid subset)'),
    ('kind = "service-resolver"\nname = "api"\nredirect { service = "api" dc = "cloud" }\n',
     'Failed to decode config entry input: 1 error occurred:\n\t* invalid config key "Redirect.dc"'),
    ('kind = "service-resolver"\nname = "api"\nredirect {\n',
     "Failed to decode config entry input: Failed to decode config entry input:"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m.split("(")[-1][:40] for _, m in BAD])
def test_refused_input_names_the_problem_and_keeps_the_stored_entry(cp, tmp_path, text, message):
    good = meshway(cp, "config", "write", str(DATA / "api_resolver.hcl"))
    assert good.returncode == 0, good.stderr
    before = meshway(cp, "config", "read", "-kind", "service-resolver", "-name", "api").stdout
    bad = tmp_path / "api_resolver.hcl"
    bad.write_text(text)
    refused = meshway(cp, "config", "write", str(bad))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(message), refused.stderr
    assert meshway(cp, "config", "read", "-kind", "service-resolver", "-name", "api").stdout == before  # same ModifyIndex


def test_proxy_defaults_must_be_named_global(cp):
    refused = meshway(cp, "config", "write", "-", stdin='Kind = "proxy-defaults"\nName = "web"\n')
    assert refused.returncode == 1
    assert refused.stderr.strip() == ('Error writing config entry proxy-defaults/web: Unexpected response code: 400 '
                                      '(invalid name ("web"), only "global" is supported)')
    assert meshway(cp, "config", "list", "-kind", "proxy-defaults").stdout == ""


@pytest.mark.parametrize("args, message", [
    (("read", "-name", "global"), "Must specify the -kind parameter"),
    (("read", "-kind", "proxy-defaults"), "Must specify the -name parameter"),
    (("list",), "Must specify the -kind parameter"),
    (("delete", "-kind", "proxy-defaults"), "Must specify the -name parameter"),
])
def test_missing_flags_as_consul(cp, args, message):
    result = meshway(cp, "config", *args)
    assert (result.returncode, result.stderr.strip()) == (1, message)


def test_the_admin_api_refuses_bad_entries_itself(cp):
    refused = httpx.put(f"{cp.admin}/v1/config", json={"Kind": "service-resolver", "Name": "api", "Redirect": {}})
    assert refused.status_code == 400 and refused.json() == {"message": "Redirect is empty"}
    unknown = httpx.get(f"{cp.admin}/v1/config/service-router")
    assert unknown.status_code == 400 and unknown.json()["message"] == "invalid config entry kind: service-router"
    assert httpx.put(f"{cp.admin}/v1/config", content="kind: proxy-defaults\nmesh_gateway: {mode: none}\n").json() is True
    assert httpx.get(f"{cp.admin}/v1/config/proxy-defaults/global").json()["MeshGateway"] == {"Mode": "none"}


def test_the_zone_name_in_get_root_and_get_zones(cp):
    root = httpx.get(cp.admin + "/").json()
    assert root["datacenter"] == "onprem" and root["configuration"]["datacenter"] == "onprem"
    dataplane = {"type": "Dataplane", "mesh": "default", "name": "web-1",
                 "networking": {"address": "10.5.0.10", "inbound": [{"port": 9090, "tags": {"kuma.io/service": "web"}}]}}
    assert httpx.put(f"{cp.admin}/meshes/default/dataplanes/web-1", json=dataplane).status_code == 201
    zones = meshway(cp, "get", "zones")
    assert zones.returncode == 0, zones.stderr
    header, row = zones.stdout.splitlines()
    assert header.split() == ["NAME", "STATUS", "GATEWAYS", "DATAPLANES", "LAST", "SYNC"]
    assert row.split() == ["onprem", "Online", "0", "1", "-"]
    as_json = json.loads(meshway(cp, "get", "zones", "-o", "json").stdout)
    assert as_json["items"] == [{"name": "onprem", "local": True, "status": "Online", "gateways": 0,
                                 "gatewayStatus": {}, "dataplanes": 1, "lastSync": None}]


def test_admin_token_is_sent(node_factory):
    node = node_factory("cp", admin_auth="token")
    token = node.cli("admin", "token", "create", "ops").stdout.strip()
    node.start()
    refused = meshway(node, "config", "write", str(DATA / "global_defaults.hcl"))
    assert refused.returncode == 1 and "401" in refused.stderr
    written = subprocess.run([MESHWAY, "config", "write", str(DATA / "global_defaults.hcl"), "--cp-address", node.admin,
                              "-token", token], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert written.stdout == "Config entry written: proxy-defaults/global\n", written.stderr
    assert httpx.get(node.admin + "/zones", headers={"Kong-Admin-Token": token}).json()["items"][0]["name"] == "dc1"
