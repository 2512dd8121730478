"""Kong's `rewrite` and `certificate` phases in a real worker, over HTTP/1.1, HTTP/2 and TLS.

Test plugins are a module written to a temp dir and registered through an entry-point
dist-info on the worker's PYTHONPATH (the path a pip-installed plugin takes).
"""
from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time

import httpx
import pytest
from cryptography import x509
from proxy_for_test import (
    Origin, WorkerProcess, cert_pair_for_test, install_plugins_for_test, plugin_for_test, route_for_test,
    service_for_test, snapshot_for_test,
)

PLUGINS = '''
import asyncio
from meshway.plugins import Plugin, PluginConfig

class Rewrite(Plugin):
    name = "t-rewrite"; priority = 100
    def rewrite(self, ctx):
        ctx.shared["seen_path"] = ctx.path
        if ctx.get_header("x-rewrite-exit"):
            ctx.exit(403, {"message": "rewrite said no"})
            return
        if ctx.path.startswith("/old"):
            ctx.set_path("/new" + ctx.path[len("/old"):])
        host = ctx.get_header("x-to-host")
        if host:
            ctx.set_header("Host", host)
    def access(self, ctx):
        ctx.set_header("X-Route", ctx.route["name"])
        ctx.set_header("X-Seen-Path", ctx.shared.get("seen_path", "-"))

class Slow(Plugin):
    name = "t-slow-rewrite"; priority = 50
    async def rewrite(self, ctx):
        if ctx.path == "/slow":
            await asyncio.sleep(0.02)
            ctx.set_path("/new/slow")

class Scoped(Plugin):
    name = "t-scoped"; priority = 10
    def rewrite(self, ctx):
        ctx.set_path("/new/scoped-rewrite-ran")
    def access(self, ctx):
        ctx.set_header("X-Scoped-Access", "yes")

class CertConfig(PluginConfig):
    cert: str = ""
    key: str = ""

class Cert(Plugin):
    name = "t-cert"; priority = 100; Config = CertConfig
    def certificate(self, tls):
        if tls.sni == "swap.test":
            tls.set_certificate(self.config.cert, self.config.key)
        elif tls.sni == "reject.test":
            tls.reject()
        elif tls.sni == "boom.test":
            raise RuntimeError("certificate kaboom")
'''
NAMES = {"t-rewrite": "Rewrite", "t-slow-rewrite": "Slow", "t-scoped": "Scoped", "t-cert": "Cert"}


def install_for_test(tmp) -> list[str]:
    return install_plugins_for_test(tmp, "meshway_phase_plugins", PLUGINS, NAMES)


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    yield o
    o.close()


def _routes(svc):
    return {name: route_for_test(svc, name=name, **kw) for name, kw in {
        "old": {"paths": ["/old"]},
        "new": {"paths": ["/new"]},
        "scoped": {"paths": ["/scoped"]},
        "by-host": {"hosts": ["b.test"], "paths": ["/hosted"]},
    }.items()}


def _worker(tmp, origin, *, global_rewrite: bool, listen=("127.0.0.1:0", "127.0.0.1:0 http2")):
    svc = service_for_test(port=origin.port)
    routes = _routes(svc)
    plugins = [plugin_for_test("t-scoped", route=routes["scoped"])]
    if global_rewrite:
        plugins += [plugin_for_test("t-rewrite"), plugin_for_test("t-slow-rewrite")]
    snap = snapshot_for_test(services=[svc], routes=list(routes.values()), plugins=plugins)
    return WorkerProcess(snap, tmp / "worker", listen=list(listen), extra_path=install_for_test(tmp))


@pytest.fixture(scope="module")
def rewriting(tmp_path_factory, origin):
    w = _worker(tmp_path_factory.mktemp("rewrite"), origin, global_rewrite=True)
    yield w
    w.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory, origin):
    w = _worker(tmp_path_factory.mktemp("norewrite"), origin, global_rewrite=False)
    yield w
    w.stop()


def _h1(w, path, **headers):
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    r = httpx.get(f"http://127.0.0.1:{w.addrs[0][1]}{path}", headers=sent)
    return r.status_code, r.json()


def _h2(w, path, **headers):
    cmd = ["curl", "-s", "--max-time", "10", "--http2-prior-knowledge", "-w", "\n%{http_code} %{http_version}"]
    for k, v in headers.items():
        cmd += ["-H", f"{k.replace('_', '-')}: {v}"]
    out = subprocess.run([*cmd, f"http://127.0.0.1:{w.addrs[1][1]}{path}"], capture_output=True, timeout=20,
                         text=True).stdout
    body, _, tail = out.rpartition("\n")
    status, version = tail.split()
    assert version == "2"
    return int(status), json.loads(body)


def _upstream(body) -> dict[str, str]:
    return {k.lower(): v for k, v in body["headers"]}


@pytest.mark.parametrize("send", [_h1, _h2], ids=["http1", "http2"])
def test_a_global_rewrite_changes_the_route_that_matches(rewriting, send):
    status, body = send(rewriting, "/old/thing?q=1")
    assert status == 200
    assert _upstream(body)["x-route"] == "new"
    assert _upstream(body)["x-seen-path"] == "/old/thing"  # the rewrite's ctx goes on to access
    assert body["url"] == "/thing?q=1"  # the new route's strip_path applies to the rewritten path


@pytest.mark.parametrize("send", [_h1, _h2], ids=["http1", "http2"])
def test_repeated_requests_keep_being_rewritten(rewriting, send):
    for _ in range(3):  # the routing caches must not remember the rewritten answer for the raw line
        assert _upstream(send(rewriting, "/old/again")[1])["x-route"] == "new"
    assert _upstream(send(rewriting, "/new/direct")[1])["x-route"] == "new"


@pytest.mark.parametrize("send", [_h1, _h2], ids=["http1", "http2"])
def test_a_rewritten_host_header_routes(rewriting, origin, send):
    assert send(rewriting, "/hosted")[0] == 404  # Host 127.0.0.1: the route wants b.test
    status, body = send(rewriting, "/hosted/a", x_to_host="b.test")
    assert status == 200 and _upstream(body)["x-route"] == "by-host" and body["url"] == "/a"
    assert _upstream(body)["host"] == f"127.0.0.1:{origin.port}"  # no preserve_host: the service's Host


@pytest.mark.parametrize("send", [_h1, _h2], ids=["http1", "http2"])
def test_an_async_rewrite_works(rewriting, send):
    status, body = send(rewriting, "/slow")
    assert status == 200 and _upstream(body)["x-route"] == "new" and body["url"] == "/slow"


@pytest.mark.parametrize("send", [_h1, _h2], ids=["http1", "http2"])
def test_a_rewrite_exit_answers_without_routing(rewriting, origin, send):
    before = len(origin.requests)
    status, body = send(rewriting, "/old/x", x_rewrite_exit="1")
    assert (status, body) == (403, {"message": "rewrite said no"})
    status, body = send(rewriting, "/no/route/at/all", x_rewrite_exit="1")
    assert status == 403
    assert len(origin.requests) == before


@pytest.mark.parametrize("send", [_h1, _h2], ids=["http1", "http2"])
def test_a_route_scoped_plugin_s_rewrite_is_not_run(rewriting, send):
    status, body = send(rewriting, "/scoped/a")
    h = _upstream(body)
    assert status == 200 and h["x-route"] == "scoped" and h["x-scoped-access"] == "yes"
    assert body["url"] == "/a"


@pytest.mark.parametrize("send", [_h1, _h2], ids=["http1", "http2"])
def test_without_a_global_rewrite_plugin_nothing_changes(plain, send):
    status, body = send(plain, "/old/thing")
    assert status == 200 and body["url"] == "/thing" and "x-route" not in _upstream(body)
    status, body = send(plain, "/scoped/a")
    assert body["url"] == "/a" and _upstream(body)["x-scoped-access"] == "yes"
    assert send(plain, "/hosted", x_to_host="b.test")[0] == 404


def test_rewrite_over_https(tmp_path, origin):
    ssl_dir = tmp_path / "worker" / "ssl"  # the worker's prefix is tmp_path / "worker"
    ssl_dir.mkdir(parents=True)
    cert, key = cert_pair_for_test("default.test")
    (ssl_dir / "default.crt").write_text(cert)
    (ssl_dir / "default.key").write_text(key)
    w = _worker(tmp_path, origin, global_rewrite=True, listen=("127.0.0.1:0 ssl",))
    try:
        r = httpx.get(f"https://127.0.0.1:{w.port}/old/tls", verify=False)
        assert r.status_code == 200 and _upstream(r.json())["x-route"] == "new" and r.json()["url"] == "/tls"
    finally:
        w.stop()


# -- certificate ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cert_worker(tmp_path_factory, origin):
    tmp = tmp_path_factory.mktemp("cert")
    prefix = tmp / "worker"
    (prefix / "ssl").mkdir(parents=True)
    cert, key = cert_pair_for_test("default.test")
    (prefix / "ssl" / "default.crt").write_text(cert)
    (prefix / "ssl" / "default.key").write_text(key)
    swap_cert, swap_key = cert_pair_for_test("swapped.test")
    svc = service_for_test(port=origin.port)
    snap = snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"], strip_path=False)],
                             plugins=[plugin_for_test("t-cert", {"cert": swap_cert, "key": swap_key})])
    w = WorkerProcess(snap, prefix, listen=["127.0.0.1:0 ssl", "127.0.0.1:0 ssl http2"],
                      extra_path=install_for_test(tmp))
    yield w
    w.stop()


def _handshake(port: int, sni: str, alpn: list[str] | None = None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return ctx.wrap_socket(sock, server_hostname=sni)
    except Exception:
        sock.close()
        raise


def _subject_cn(port: int, sni: str, alpn: list[str] | None = None) -> str:
    with _handshake(port, sni, alpn) as s:
        cert = x509.load_der_x509_certificate(s.getpeercert(binary_form=True))
    return cert.subject.rfc4514_string()


def test_a_certificate_plugin_swaps_the_served_certificate(cert_worker):
    assert _subject_cn(cert_worker.port, "swap.test") == "CN=swapped.test"
    assert _subject_cn(cert_worker.port, "other.test") == "CN=default.test"
    assert _subject_cn(cert_worker.addrs[1][1], "swap.test", ["h2", "http/1.1"]) == "CN=swapped.test"


def test_a_swapped_certificate_serves_requests(cert_worker):
    with _handshake(cert_worker.port, "swap.test") as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: swap.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b'"url": "/hello"' in data


def test_the_h2_listener_keeps_its_alpn_with_a_swapped_certificate(cert_worker):
    with _handshake(cert_worker.addrs[1][1], "swap.test", ["h2", "http/1.1"]) as s:
        assert s.selected_alpn_protocol() == "h2"


def test_reject_fails_the_handshake(cert_worker):
    with pytest.raises(ssl.SSLError):
        _handshake(cert_worker.port, "reject.test").close()
    assert _subject_cn(cert_worker.port, "other.test") == "CN=default.test"


def test_a_raising_certificate_plugin_serves_the_default_certificate(cert_worker):
    assert _subject_cn(cert_worker.port, "boom.test") == "CN=default.test"
    assert cert_worker.alive()
    deadline = time.monotonic() + 3
    while "certificate kaboom" not in cert_worker.error_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "plugin t-cert failed in certificate phase" in cert_worker.error_log()


def test_an_async_certificate_phase_is_refused_with_the_plugin_name(tmp_path):
    from meshway.plugins import Plugin
    from meshway.proxy import compile_runtime

    class Late(Plugin):
        name = "late-cert"

        async def certificate(self, tls):
            pass

    with pytest.raises(ValueError, match="plugin 'late-cert'.*certificate phase is a coroutine"):
        compile_runtime(snapshot_for_test(plugins=[plugin_for_test("late-cert")]), plugins={"late-cert": Late})
