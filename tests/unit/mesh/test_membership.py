"""Mesh membership as pure values: inbound entries, the pushed section, the sender's lookup."""
from __future__ import annotations

import pytest

from meshway.mesh import (
    InboundError, check_inbound, compile_endpoints, inbound_entries, mesh_section, normalize_entry, remote_endpoints,
    with_mesh,
)


@pytest.mark.parametrize("raw, canonical", [
    ("127.0.0.5", "127.0.0.5"),
    (" 127.0.0.5:19000 ", "127.0.0.5:19000"),
    ("10.1.2.3/8", "10.0.0.0/8"),
    ("[::1]:80", "[::1]:80"),
    ("::1", "::1"),
])
def test_entries_are_canonical(raw, canonical):
    assert normalize_entry(raw) == canonical


@pytest.mark.parametrize("raw, error", [
    ("service-b", "is not an ip"),
    ("127.0.0.5:http", "invalid port"),
    ("127.0.0.5:70000", "out of range"),
    ("10.0.0.0/8:80", "takes no port"),
])
def test_bad_entries_name_themselves(raw, error):
    with pytest.raises(InboundError, match=error):
        normalize_entry(raw)


def test_inbound_defaults_to_the_left_side_of_origins():
    origins = (("tcp://127.0.0.5:19000", "tcp://127.0.0.5:19000"), ("http://127.0.0.5:18000", "http://10.0.0.1:80"))
    assert inbound_entries((), origins) == ("127.0.0.5:19000", "127.0.0.5:18000")
    assert inbound_entries(("127.0.0.5",), origins) == ("127.0.0.5",)
    with pytest.raises(InboundError):
        inbound_entries(("nope",), origins)


def test_a_hello_field_is_checked():
    assert check_inbound(["127.0.0.5"]) == ("127.0.0.5",)
    for bad in ("127.0.0.5", [1], ["x"] * 300, ["not-an-ip"]):
        with pytest.raises(InboundError):
            check_inbound(bad)


def test_the_section_and_its_hash_follow_membership():
    snap = {"services": []}
    assert with_mesh(snap, "h0", mesh_section({"n1": ()})) == (snap, "h0")  # nobody fronts anything
    one, h1 = with_mesh(snap, "h0", mesh_section({"n1": ("127.0.0.5",)}))
    two, h2 = with_mesh(snap, "h0", mesh_section({"n1": ("127.0.0.5",), "n2": ("127.0.0.6",)}))
    assert one["mesh"] == {"endpoints": [{"node_id": "n1", "inbound": ["127.0.0.5"]}]}
    assert len({"h0", h1, h2}) == 3 and "mesh" not in snap
    assert with_mesh(snap, "h0", mesh_section({"n2": ("127.0.0.6",), "n1": ("127.0.0.5",)}))[1] == h2


def test_lookup_by_address_host_and_network():
    eps = compile_endpoints(["127.0.0.5", "10.0.0.7:80", "192.168.0.0/16"])
    assert eps.contains("127.0.0.5", 1) and eps.contains("10.0.0.7", 80) and eps.contains("192.168.3.4", 9)
    assert not eps.contains("10.0.0.7", 81) and not eps.contains("127.0.0.6", 1) and not eps.contains("name", 1)
    assert eps.has_ip("10.0.0.7") and eps.has_ip("192.168.9.9") and not eps.has_ip("10.0.0.8")


def test_a_sender_never_counts_itself():
    section = {"endpoints": [{"node_id": "me", "inbound": ["127.0.0.2"]},
                             {"node_id": "b", "inbound": ["127.0.0.5", "127.0.0.9:80"]}]}
    eps = remote_endpoints(section, "me", own=("127.0.0.9:80",))
    assert eps.contains("127.0.0.5", 19000)
    assert not eps.contains("127.0.0.2", 1)  # my node's entries
    assert not eps.contains("127.0.0.9", 80)  # my own settings' entries
    assert not remote_endpoints(None, "me", ())
