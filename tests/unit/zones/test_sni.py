"""Consul's SNI names (agent/connect/sni.go) and what a gateway reads back from them."""
from __future__ import annotations

import pytest

from meshway.zones._sni import ServiceName, datacenter_sni, parse_sni, service_sni, sni_datacenter

TD = "ad775526-1c1e-4b4f-9a52-b2c3a1c1f7d0.consul"


def test_consuls_example_from_issue_9811():
    assert service_sni("web-be", "gke-k8s-1", TD) == f"web-be.default.gke-k8s-1.internal.{TD}"


def test_subset_prefix_namespace_and_partition():
    assert service_sni("api", "cloud", TD, subset="v1") == f"v1.api.default.cloud.internal.{TD}"
    assert service_sni("api", "cloud", TD, namespace="team") == f"api.team.cloud.internal.{TD}"
    assert service_sni("api", "cloud", TD, partition="p1") == f"api.default.p1.cloud.internal-v1.{TD}"
    assert service_sni("api", "cloud", TD, subset="v1", partition="p1") == f"v1.api.default.p1.cloud.internal-v1.{TD}"
    assert datacenter_sni("cloud", TD) == f"cloud.internal.{TD}"


@pytest.mark.parametrize("kw, expected", [
    ({}, ServiceName("api", "default", "cloud")),
    ({"subset": "v1"}, ServiceName("api", "default", "cloud", "v1")),
    ({"partition": "p1", "subset": "v2"}, ServiceName("api", "default", "cloud", "v2", "p1")),
])
def test_round_trip(kw, expected):
    assert parse_sni(service_sni("api", "cloud", TD, **kw), TD) == expected


@pytest.mark.parametrize("sni", ["api.default.cloud.internal.other.consul", "api.cloud.internal." + TD,
                                 "a.b.api.default.cloud.internal." + TD, "example.com", "..cloud.internal." + TD])
def test_names_that_are_not_mesh_names_of_this_trust_domain(sni):
    assert parse_sni(sni, TD) is None


def test_the_label_a_gateway_routes_on():
    assert sni_datacenter(service_sni("api", "cloud", TD, subset="v1"), TD) == "cloud"
    assert sni_datacenter(datacenter_sni("onprem", TD), TD) == "onprem"
    assert sni_datacenter("api.default.cloud.internal.elsewhere.consul", TD) is None
    assert sni_datacenter(f"API.DEFAULT.CLOUD.INTERNAL.{TD.upper()}.", TD) == "cloud"  # names are case-insensitive
