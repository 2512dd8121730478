"""Mesh and Dataplane resources through a real node and the real CLI (apply, get, inspect, tokens)."""
from __future__ import annotations

import json
import subprocess

import httpx
import yaml

from tests.helpers.node import MESHWAY, clean_env, node_factory  # noqa: F401

DP_TEMPLATE = """\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: {{ address }}
  inbound:
  - port: {{ port }}
    tags:
      kuma.io/service: demo-client
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
"""


def cli(node, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([MESHWAY, *args, "--cp-address", node.admin], input=stdin, capture_output=True, text=True,
                          env=clean_env(), timeout=60)


def test_apply_get_and_inspect_the_documents_dataplane(node_factory, tmp_path):
    node = node_factory("cp")
    node.start()
    template = tmp_path / "dpyaml-demo"
    template.write_text(DP_TEMPLATE)

    meshes = cli(node, "get", "meshes")
    assert meshes.returncode == 0, meshes.stderr
    assert meshes.stdout.split("\n")[0].split() == ["NAME", "mTLS", "LOCALITY", "ZONEEGRESS", "AGE"]
    assert meshes.stdout.split("\n")[1].split()[:4] == ["default", "off", "off", "off"]

    dry = cli(node, "apply", "-f", str(template), "-v", "name=dp-demo", "-v", "address=10.0.0.7,port=8080", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert yaml.safe_load(dry.stdout)["networking"]["inbound"][0]["port"] == 8080
    assert httpx.get(f"{node.admin}/meshes/default/dataplanes").json()["total"] == 0  # dry run changed nothing

    applied = cli(node, "apply", "-f", str(template), "-v", "name=dp-demo", "-v", "address=10.0.0.7", "-v", "port=8080")
    assert applied.returncode == 0, applied.stderr
    listing = cli(node, "get", "dataplanes")
    header, row = listing.stdout.splitlines()[:2]
    assert header.split() == ["MESH", "NAME", "TAGS", "ADDRESS", "AGE"]
    assert row.split()[:4] == ["default", "dp-demo", "kuma.io/service=demo-client", "10.0.0.7"]
    as_json = json.loads(cli(node, "get", "dataplanes", "-o", "json").stdout)
    assert as_json["items"][0]["networking"]["transparentProxying"] == {"redirectPortInbound": 15006,
                                                                      "redirectPortOutbound": 15001}
    one = yaml.safe_load(cli(node, "get", "dataplane", "dp-demo", "-o", "yaml").stdout)
    assert one["name"] == "dp-demo" and one["creationTime"]

    inspect = cli(node, "inspect", "dataplanes")
    lines = inspect.stdout.splitlines()
    assert lines[0].startswith("MESH") and "LAST CONNECTED AGO" in lines[0] and lines[0].rstrip().endswith("NOTES")
    assert "Offline" in lines[1] and "never" in lines[1]  # registered, never connected


def test_a_missing_variable_names_the_field_and_stores_nothing(node_factory, tmp_path):
    node = node_factory("cp")
    node.start()
    template = tmp_path / "dp.yaml"
    template.write_text(DP_TEMPLATE)
    result = cli(node, "apply", "-f", str(template), "-v", "name=dp-demo", "-v", "port=8080")  # no address
    assert result.returncode == 1
    assert "networking.address: address can't be empty" in result.stderr
    assert httpx.get(f"{node.admin}/meshes/default/dataplanes").json()["total"] == 0
    # the Admin API refuses the same body by itself, naming the field
    body = yaml.safe_load(DP_TEMPLATE.replace("{{ name }}", "x").replace("{{ address }}", "10.0.0.1")
                          .replace("{{ port }}", "70000"))
    refused = httpx.put(f"{node.admin}/meshes/default/dataplanes/x", json=body)
    assert refused.status_code == 400
    assert refused.json()["causes"] == [{"field": "networking.inbound[0].port",
                                         "message": "port must be in the range [1, 65535]"}]


def test_meshes_from_stdin_and_delete_cascades(node_factory):
    node = node_factory("cp")
    node.start()
    docs = "type: Mesh\nname: other\n---\n" + DP_TEMPLATE.replace("mesh: default", "mesh: other").replace(
        "{{ name }}", "dp-1").replace("{{ address }}", "10.0.0.1").replace("{{ port }}", "80")
    assert cli(node, "apply", "-f", "-", stdin=docs).returncode == 0
    assert [m["name"] for m in httpx.get(f"{node.admin}/meshes").json()["items"]] == ["default", "other"]
    assert httpx.get(f"{node.admin}/meshes/other/dataplanes/dp-1").status_code == 200
    assert httpx.get(f"{node.admin}/dataplanes").json()["total"] == 1
    in_other = cli(node, "get", "dataplanes", "-m", "other")
    assert [line.split()[:2] for line in in_other.stdout.splitlines()[1:]] == [["other", "dp-1"]]
    assert cli(node, "get", "dataplanes").stdout.splitlines()[1:] == []  # -m defaults to the default mesh
    assert "dp-1" in cli(node, "inspect", "dataplanes", "--mesh", "other").stdout
    nowhere = DP_TEMPLATE.replace("mesh: default", "mesh: nowhere").replace("{{ name }}", "x").replace(
        "{{ address }}", "10.0.0.1").replace("{{ port }}", "80")
    refused = cli(node, "apply", "-f", "-", stdin=nowhere)
    assert refused.returncode == 1 and "mesh of name nowhere is not found" in refused.stderr
    assert httpx.delete(f"{node.admin}/meshes/other").status_code == 200
    assert httpx.get(f"{node.admin}/meshes/other/dataplanes/dp-1").status_code == 404
    assert httpx.get(f"{node.admin}/dataplanes").json()["total"] == 0


def test_tokens_are_signed_by_the_node_and_revocable(node_factory, tmp_path):
    from meshway.mesh import MeshCA
    from meshway.mesh._tokens import TokenError, unverified_claims, verify

    node = node_factory("cp")
    node.start()
    made = cli(node, "generate", "dataplane-token", "--name", "dp-demo", "--mesh", "default", "--valid-for", "24h")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    claims = unverified_claims(token)
    assert (claims["Name"], claims["Mesh"]) == ("dp-demo", "default")
    assert 86000 < claims["exp"] - claims["iat"] <= 86400
    ca = MeshCA.load_or_create(node.prefix / "mesh")
    verify(token, ca)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    revoked = cli(node, "revoke", "dataplane-token", "--token-file", str(token_file))
    assert revoked.returncode == 0, revoked.stderr
    from meshway.settings import load_settings
    from meshway.store import open_store

    store = open_store(load_settings(str(node.conf), env={}, overrides={"prefix": str(node.prefix)}))
    try:
        verify(token, ca, store.mesh.revoked("default"))
        raise AssertionError("a revoked token verified")
    except TokenError as e:
        assert "revoked" in str(e)
    bad = cli(node, "generate", "dataplane-token", "--name", "x", "--valid-for", "1d")
    assert bad.returncode == 1 and "invalid duration" in bad.stderr
