"""WAN federation of two control planes on loopback (onprem primary, cloud joining it with the
document's settings): each learns the other, its gateways and services; the primary's config
entries reach the secondary, a write at the secondary goes to the primary; a zone that stops is
shown Offline and its last state kept; it is caught up with when it returns."""
from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from tests.helpers.node import MESHWAY, clean_env, node_factory  # noqa: F401

API_RESOLVER = 'kind = "service-resolver"\nname = "api"\n\nredirect {\n  service    = "api"\n  datacenter = "cloud"\n}\n'


def wait_for(cond, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s")


def zones(cp) -> dict[str, dict]:
    run = subprocess.run([MESHWAY, "get", "zones", "-o", "json", "--cp-address", cp.admin], capture_output=True,
                         text=True, env=clean_env(), timeout=60)
    assert run.returncode == 0, run.stderr
    return {z["name"]: z for z in json.loads(run.stdout)["items"]}


@pytest.fixture
def federated(node_factory):
    onprem = node_factory("onprem", role="control_plane", proxy_listen="off", datacenter="onprem")
    onprem.start()
    cloud = node_factory("cloud", role="control_plane", proxy_listen="off", datacenter="cloud",
                         primary_datacenter="onprem", retry_join_wan=f'["127.0.0.1:{onprem.admin_port}"]',
                         advertise_addr_wan=f"127.0.0.1:{0}", retry_interval_wan="0.5")
    cloud.settings["advertise_addr_wan"] = f"127.0.0.1:{cloud.admin_port}"
    cloud.conf.write_text("".join(f"{k} = {v}\n" for k, v in cloud.settings.items()))
    cloud.start()
    return onprem, cloud


def test_zones_learn_each_other_and_entries_follow_the_primary(federated, tmp_path):
    onprem, cloud = federated
    gateway = {"Kind": "mesh-gateway", "ID": "gw-cloud", "Name": "mesh-gateway", "Address": "10.6.0.33", "Port": 8443,
               "TaggedAddresses": {"wan": {"Address": "192.169.7.140", "Port": 443}}}
    assert httpx.put(f"{cloud.admin}/v1/agent/service/register", json=gateway).status_code == 200
    api = {"type": "Dataplane", "mesh": "default", "name": "api-1",
           "networking": {"address": "10.6.0.10", "inbound": [{"port": 9090, "tags": {"kuma.io/service": "api"}}]}}
    assert httpx.put(f"{cloud.admin}/meshes/default/dataplanes/api-1", json=api).status_code == 201

    # one side joined: both know each other (as one `consul join -wan`)
    seen = wait_for(lambda: zones(onprem).get("cloud", {}).get("gateways") == 1 and zones(onprem), what="onprem sees cloud")
    assert seen["cloud"]["status"] == "Online" and seen["cloud"]["dataplanes"] == 1 and seen["cloud"]["lastSync"]
    assert wait_for(lambda: zones(cloud).get("onprem", {}).get("status") == "Online", what="cloud sees onprem")
    # onprem's gateways route cloud's names to cloud's gateway at its WAN address
    document = httpx.get(f"{onprem.admin}/v1/zones/gateway-config").json()
    remote = [s for s in document["services"] if s["name"] == "remote-cloud"]
    assert remote[0]["routes"][0]["snis"] == ["*.cloud.internal.mesh.meshway"]
    assert document["upstreams"] == [{"name": "cloud.remote-gateways", "targets": [{"target": "192.169.7.140:443"}]}]

    # written at the primary: replicated to the secondary
    (tmp_path / "api_resolver.hcl").write_text(API_RESOLVER)
    written = subprocess.run([MESHWAY, "config", "write", str(tmp_path / "api_resolver.hcl"), "-http-addr", onprem.admin],
                             capture_output=True, text=True, env=clean_env(), timeout=60)
    assert written.stdout == "Config entry written: service-resolver/api\n", written.stderr
    wait_for(lambda: httpx.get(f"{cloud.admin}/v1/config/service-resolver/api").status_code == 200,
             what="the resolver replicated to cloud")
    # written at the secondary: forwarded to the primary, then back
    defaults = '{"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}}'
    written = subprocess.run([MESHWAY, "config", "write", "-", "-http-addr", cloud.admin], input=defaults,
                             capture_output=True, text=True, env=clean_env(), timeout=60)
    assert written.stdout == "Config entry written: proxy-defaults/global\n", written.stderr
    assert httpx.get(f"{onprem.admin}/v1/config/proxy-defaults/global").json()["MeshGateway"] == {"Mode": "local"}
    wait_for(lambda: httpx.get(f"{cloud.admin}/v1/config/proxy-defaults/global").status_code == 200,
             what="the defaults back in cloud")
    # deleted at the primary: gone from the secondary too
    assert httpx.delete(f"{onprem.admin}/v1/config/service-resolver/api").status_code == 200
    wait_for(lambda: httpx.get(f"{cloud.admin}/v1/config/service-resolver/api").status_code == 404,
             what="the delete replicated")

    # the primary stops: cloud keeps serving what it knew, shows onprem Offline, refuses writes
    onprem.stop()
    assert wait_for(lambda: zones(cloud)["onprem"]["status"] == "Offline", what="onprem offline")
    assert httpx.get(f"{cloud.admin}/v1/config/proxy-defaults/global").status_code == 200
    refused = subprocess.run([MESHWAY, "config", "write", "-", "-http-addr", cloud.admin], input=defaults,
                             capture_output=True, text=True, env=clean_env(), timeout=60)
    assert refused.returncode == 1 and "primary datacenter 'onprem' is unreachable" in refused.stderr
    onprem.start()  # it returns (same database): caught up with at the next exchange
    assert wait_for(lambda: zones(cloud)["onprem"]["status"] == "Online", what="onprem back online")
    # Online can show from onprem's own exchange before cloud's next one succeeds and logs it
    wait_for(lambda: "federation with" in cloud.error_log() and "restored" in cloud.error_log(),
             what="cloud's log of the federation restored")


def test_a_peer_with_the_same_datacenter_is_refused(node_factory):
    one = node_factory("one", role="control_plane", proxy_listen="off", datacenter="onprem")
    one.start()
    refused = httpx.put(f"{one.admin}/v1/zones/federation", json={"datacenter": "onprem"})
    assert refused.status_code == 400 and "datacenter 'onprem' too" in refused.json()["message"]
    refused = httpx.put(f"{one.admin}/v1/zones/federation", json={"gateways": []})
    assert refused.status_code == 400 and "no datacenter" in refused.json()["message"]
