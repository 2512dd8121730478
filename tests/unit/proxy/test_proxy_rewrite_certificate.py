"""The `rewrite` and `certificate` phases without sockets: who runs, in which order, what routing sees."""
from __future__ import annotations

import asyncio
import ssl
import uuid

import pytest

from meshway.plugins import Plugin
from meshway.proxy import Context, compile_plugins, compile_runtime
from meshway.proxy._engine import run_rewrite
from meshway.proxy._pipeline import rewritten
from meshway.proxy._tls import ServerTLS, run_certificate


class Moves(Plugin):
    name = "moves"
    priority = 20

    def rewrite(self, ctx):
        ctx.shared.setdefault("order", []).append("moves")
        ctx.set_path("/moved")


class Stops(Plugin):
    name = "stops"
    priority = 30

    def rewrite(self, ctx):
        ctx.shared.setdefault("order", []).append("stops")
        if ctx.get_header("x-stop"):
            ctx.exit(418, {"message": "stopped"})


class Waits(Plugin):
    name = "waits"
    priority = 10

    async def rewrite(self, ctx):
        await asyncio.sleep(0)
        ctx.set_header("X-Waited", "yes")


class Swaps(Plugin):
    name = "swaps"
    priority = 20
    pair: tuple[str, str] | None = None

    def certificate(self, tls):
        if tls.sni == "reject.test":
            tls.reject()
        elif tls.sni == "swap.test":
            tls.set_certificate(*Swaps.pair)


class Raises(Plugin):
    name = "raises"
    priority = 10

    def certificate(self, tls):
        tls.set_certificate("not a certificate", "nor a key")  # raises: its change must not stick


class AsyncCert(Plugin):
    name = "async-cert"

    async def certificate(self, tls):
        pass


AVAILABLE = {c.name: c for c in (Moves, Stops, Waits, Swaps, Raises, AsyncCert)}


def entity(name, route=None, protocols=None):
    return {"id": str(uuid.uuid4()), "name": name, "config": {}, "enabled": True, "protocols": protocols,
            "route": {"id": route} if route else None, "service": None, "consumer": None}


def ctx_for_test(headers=(), path="/a", query=""):
    return Context("rid", "127.0.0.1", "GET", "http", "a.test", path, query,
                   [(b"Host", b"a.test"), *headers], None, None, {}, 0.0)


def test_only_global_plugins_have_a_rewrite_phase():
    pset = compile_plugins({"plugins": [entity("moves", route="R"), entity("stops")]}, AVAILABLE)
    assert [i.name for i in pset.rewrite] == ["stops"]
    ctx = ctx_for_test()
    assert run_rewrite(pset, ctx) is None
    assert ctx.shared["order"] == ["stops"] and ctx.upstream_path is None


def test_no_rewrite_plugin_gives_an_empty_tuple():
    assert compile_plugins({"plugins": [entity("swaps")]}, AVAILABLE).rewrite == ()
    runtime = compile_runtime({"plugins": [entity("moves", route="R")]}, plugins=AVAILABLE)
    assert runtime.rewrite == ()


def test_rewrite_exit_stops_the_chain():
    pset = compile_plugins({"plugins": [entity("moves"), entity("stops")]}, AVAILABLE)
    ctx = ctx_for_test(headers=[(b"X-Stop", b"1")])
    run_rewrite(pset, ctx)
    assert ctx.exited.status == 418 and ctx.shared["order"] == ["stops"]


def test_an_async_rewrite_that_suspends_returns_an_awaitable():
    pset = compile_plugins({"plugins": [entity("moves"), entity("waits")]}, AVAILABLE)
    ctx = ctx_for_test()
    pending = run_rewrite(pset, ctx)
    assert pending is not None
    asyncio.run(_wait(pending))
    assert ctx.get_header("x-waited") == "yes" and ctx.upstream_path == "/moved"


async def _wait(pending):
    await pending


def test_rewritten_values_become_the_request_s():
    ctx = ctx_for_test(query="q=1")
    assert rewritten(ctx, "GET", "a.test", "/a", "q=1") is None
    ctx.set_path("/b")
    ctx.set_header("Host", "b.test")
    ctx.set_method("post")
    assert rewritten(ctx, "GET", "a.test", "/a", "q=1") == ("POST", "b.test", "/b", "q=1")
    assert (ctx.path, ctx.host, ctx.upstream_path) == ("/b", "b.test", None)


def test_an_async_certificate_phase_is_refused_naming_the_plugin():
    with pytest.raises(ValueError, match="async-cert.*certificate phase is a coroutine"):
        compile_plugins({"plugins": [entity("async-cert")]}, AVAILABLE)


def test_certificate_plugins_reach_the_config_s_tls_contexts():
    snap = {"plugins": [entity("swaps"), entity("raises", route="R"), entity("raises", protocols=["http"])]}
    runtime = compile_runtime(snap, plugins=AVAILABLE)
    assert [i.name for i in runtime.tls.certificate] == ["swaps"]  # global, and for https only
    assert compile_runtime({}, plugins=AVAILABLE).tls.certificate == ()


def _tls_with(names, tmp_path):
    from tests.integration.proxy.proxy_for_test import cert_pair_for_test

    Swaps.pair = cert_pair_for_test("swapped.test")
    cert, key = cert_pair_for_test("default.test")
    (tmp_path / "d.crt").write_text(cert)
    (tmp_path / "d.key").write_text(key)
    pset = compile_plugins({"plugins": [entity(n) for n in names]}, AVAILABLE)
    return ServerTLS({}, (str(tmp_path / "d.crt"), str(tmp_path / "d.key")), pset.certificate)


def test_set_certificate_and_reject(tmp_path):
    tls = _tls_with(["swaps"], tmp_path)
    default = tls.lookup("a.test", False)
    hs = run_certificate(tls, "swap.test", False, default)
    assert isinstance(hs.context, ssl.SSLContext) and hs.context is not default
    assert run_certificate(tls, "swap.test", False, default).context is hs.context  # built once per config
    assert run_certificate(tls, "other.test", False, default).context is default
    assert run_certificate(tls, "reject.test", False, default).rejected


def test_a_raising_certificate_phase_keeps_the_handshake_as_it_was(tmp_path, caplog):
    tls = _tls_with(["swaps", "raises"], tmp_path)
    default = tls.lookup("swap.test", False)
    hs = run_certificate(tls, "swap.test", False, default)
    assert hs.context is tls.for_pair(*Swaps.pair, False)  # swaps' choice kept, raises' dropped
    assert "plugin raises failed in certificate phase" in caplog.text
