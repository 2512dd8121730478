"""Routes with `snis` over HTTPS: the name the client sent in its ClientHello, HTTP/1.1 and h2."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.proxy.proxy_for_test import (
    Origin, WorkerProcess, cert_pair_for_test, route_for_test, service_for_test, snapshot_for_test,
)


@pytest.fixture(scope="module")
def sni_worker(tmp_path_factory):
    origin = Origin()
    prefix = tmp_path_factory.mktemp("sni")
    (prefix / "ssl").mkdir()
    cert, key = cert_pair_for_test("default.test")
    (prefix / "ssl" / "default.crt").write_text(cert)
    (prefix / "ssl" / "default.key").write_text(key)
    svc = service_for_test(port=origin.port)
    route = route_for_test(svc, protocols=["https"], snis=["a.test"], strip_path=False)
    w = WorkerProcess(snapshot_for_test(services=[svc], routes=[route]), prefix, listen=["127.0.0.1:0 ssl http2"])
    yield w
    w.stop()
    origin.close()


def _curl(port: int, name: str, *flags: str) -> tuple[str, str, bytes]:
    """(status, HTTP version, body) of `curl https://<name>:<port>/sni` with <name> resolved to 127.0.0.1."""
    out = subprocess.run(["curl", "-sk", "--max-time", "10", "--resolve", f"{name}:{port}:127.0.0.1", *flags,
                          "-w", "\n%{http_code} %{http_version}", f"https://{name}:{port}/sni"],
                         capture_output=True, timeout=20).stdout
    body, _, tail = out.rpartition(b"\n")
    status, version = tail.decode().split()
    return status, version, body


@pytest.mark.parametrize("flag,version", [("--http1.1", "1.1"), ("--http2", "2")])
def test_a_route_with_snis_matches_the_name_of_the_client_hello(sni_worker, flag, version):
    status, got_version, body = _curl(sni_worker.port, "a.test", flag)
    assert (status, got_version) == ("200", version)
    assert json.loads(body)["url"] == "/sni"


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_a_route_with_snis_does_not_match_another_name(sni_worker, flag):
    status, _, body = _curl(sni_worker.port, "b.test", flag)
    assert status == "404" and b"no Route matched" in body
