"""grpc-web and grpc-gateway in hybrid mode: created on a control plane (real PostgreSQL), which
compiles the proto file when the plugin is created, and run by a data plane that compiles it again
from the same path (the file must be on the data planes too, as with Kong)."""
from __future__ import annotations

import struct
import subprocess

import httpx
import pytest

from tests.e2e.grpc_origin_for_test import PROTO, GreeterOrigin, greeter_pb2_for_test
from tests.e2e.test_hybrid_walkthrough import _cp, _dp, _eventually
from tests.helpers.node import free_port

pytestmark = [pytest.mark.postgres]


def test_data_plane_runs_the_grpc_plugins(node_factory, postgres_db, tmp_path):
    cert = (str(tmp_path / "cluster.crt"), str(tmp_path / "cluster.key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", cert[1],
                    "-out", cert[0], "-days", "2", "-nodes", "-subj", "/CN=kong_clustering/"], check=True, capture_output=True)
    cluster_port = free_port()
    cp = _cp(node_factory, postgres_db, cert, cluster_port)
    assert cp.cli("migrations", "bootstrap").returncode == 0
    cp.start()
    dp = _dp(node_factory, "dp", cert, cluster_port)
    dp.start()
    pb2 = greeter_pb2_for_test(tmp_path / "pb2")
    origin = GreeterOrigin(pb2)
    try:
        admin = httpx.Client(base_url=cp.admin)
        assert admin.post("/services", json={"name": "greeter", "protocol": "grpc", "host": "127.0.0.1",
                                             "port": origin.port}).status_code == 201
        for name, path in (("web", "/web"), ("rest", "/v1")):
            r = admin.post("/services/greeter/routes", json={"name": name, "paths": [path], "strip_path": name == "web"})
            assert r.status_code == 201, r.text
        r = admin.post("/routes/rest/plugins", json={"name": "grpc-gateway", "config": {"proto": str(tmp_path / "no.proto")}})
        assert r.status_code == 400 and "proto" in r.json()["fields"]["config"], r.text
        assert admin.post("/routes/rest/plugins", json={"name": "grpc-gateway",
                                                        "config": {"proto": str(PROTO)}}).status_code == 201
        assert admin.post("/routes/web/plugins", json={"name": "grpc-web",
                                                       "config": {"pass_stripped_path": True}}).status_code == 201

        def rest() -> httpx.Response:
            return httpx.get(f"{dp.proxy}/v1/messages/hybrid", timeout=5)

        _eventually(lambda: rest().status_code == 200, what="the data plane runs grpc-gateway")
        assert rest().json() == {"reply": "hello hybrid", "boolean_test": False}
        hello = pb2.HelloRequest(name="web").SerializeToString()
        r = httpx.post(f"{dp.proxy}/web/meshtest.Greeter/SayHello", content=struct.pack(">BI", 0, len(hello)) + hello,
                       headers={"Content-Type": "application/grpc-web+proto"}, timeout=5)
        assert r.status_code == 200 and r.headers["content-type"] == "application/grpc-web+proto", r.text
        assert pb2.HelloReply.FromString(r.content[5:5 + struct.unpack(">I", r.content[1:5])[0]]).reply == "hello web"
        assert b"grpc-status:0\r\n" in r.content
    finally:
        origin.close()
