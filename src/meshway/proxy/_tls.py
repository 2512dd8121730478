"""TLS contexts, built at compile time: server certificates by SNI, client contexts for upstreams.

Rules:
- A server context holds a certificate's RSA pair and, when given, its ECDSA pair
  (`cert_alt`/`key_alt`), so OpenSSL picks by the client's signature algorithms.
- SNI lookup: exact name first, then the `*.` wildcard of the name's parent, then the default
  certificate (settings `ssl_cert`/`ssl_cert_key`, else `<prefix>/ssl/default.crt|key`).
- The SNI callback records the name on the connection's SSLObject (`meshway_sni`): server-side
  `server_hostname` is always None, and routes with `snis` match on this name. The mesh name
  is not recorded: it names the sidecar hop, not what the client asked for.
- TLS 1.2 and 1.3 only; TLS 1.2 offers only Mozilla "intermediate" AEAD suites (`meshway.tlspolicy`).
- ALPN offers `http/1.1`, plus `h2` first on `http2` listeners; every context exists in both
  flavours because the SNI callback swaps the whole context.
- Global plugins' `certificate(tls)` phases run in the SNI callback, after the lookup, by
  priority, synchronously (`Handshake`): `set_certificate` swaps in another pair (contexts
  for pairs are cached per config), `reject` fails the handshake and stops the chain. A phase
  that raises is logged with the plugin's name and its changes are dropped: the handshake goes
  on as before it ran. They come with the config (`ServerTLS.certificate`), so a reload brings
  its own; with none the callback pays one tuple test. Mesh handshakes never run them.
- Upstream contexts: `tls_verify` (default off, as Kong), `tls_verify_depth`, `ca_certificates`
  (PEM from the snapshot), `client_certificate` (a certificate entity). Python's ssl module has
  no verify-depth knob, so the depth rides on the context (`VERIFY_DEPTH_ATTR`) and
  `check_verify_depth` enforces it on the verified chain right after the handshake.
"""
from __future__ import annotations

import logging
import os
import ssl
from typing import Any, Mapping

from .. import tlspolicy
from .meshhooks import is_mesh_sni

__all__ = ["Handshake", "ServerTLS", "client_context", "compiled_listener", "load_pair", "sni_chooser"]

log = logging.getLogger("meshway.proxy")
_PAIRS_CACHED = 256  # contexts built for `set_certificate` pairs, per config


def _write_tmp(pem: str) -> str:
    import tempfile  # only configs with certificates write them (tempfile loads shutil, bz2, lzma)

    fd, path = tempfile.mkstemp(suffix=".pem")
    with os.fdopen(fd, "w") as f:
        f.write(pem)
    return path


def load_pair(ctx: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """Load a PEM certificate and key given as text (ssl wants files)."""
    cert, key = _write_tmp(cert_pem), _write_tmp(key_pem)
    try:
        ctx.load_cert_chain(cert, key)
    finally:
        os.unlink(cert)
        os.unlink(key)


def _server_context(alpn: list[str]) -> ssl.SSLContext:
    ctx = tlspolicy.context(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_alpn_protocols(alpn)
    return ctx


_ALPN = {False: ["http/1.1"], True: ["h2", "http/1.1"]}
# Whether this process serves TLS listeners (`serves_tls`, called by the worker before its first
# TLS listener, e.g. a standalone worker's `--listen ... ssl`). Then, as on a node whose settings
# have TLS listeners (`tls_listeners`), each config builds its default-certificate contexts as it
# compiles, as certificates by SNI: a broken default pair rejects the config (the node's check
# of an Admin API write too) and no handshake pays it.
_SERVES_TLS = [False]


def serves_tls() -> None:
    _SERVES_TLS[0] = True

# The server contexts of the last config compiled in this process, by PEM pair and flavour: the
# next config reuses those of unchanged certificates, so that an Admin API write (which compiles
# the whole config) does not re-parse every certificate and key. Only the last config's are
# kept, so memory follows the config. Contexts are never changed once built.
_last_contexts: dict[tuple, ssl.SSLContext] = {}


class ServerTLS:
    """Server contexts by SNI for one config, in HTTP/1.1-only and h2 flavours."""

    def __init__(self, snapshot: Mapping[str, Any], default_pair: tuple[str, str] | None,
                 certificate: tuple | None = None, tls_listeners: bool = False):
        # The config's global `certificate` plugin instances (see meshway.proxy._plugins).
        self.certificate = certificate or ()
        self.pairs: dict[tuple[str, str, bool], ssl.SSLContext] = {}
        self.by_name: dict[str, dict[bool, ssl.SSLContext]] = {}
        global _last_contexts
        certs = {c["id"]: c for c in snapshot.get("certificates") or ()}
        built: dict[str, dict[bool, ssl.SSLContext]] = {}
        kept: dict[tuple, ssl.SSLContext] = {}
        for sni in snapshot.get("snis") or ():
            cert_id = (sni.get("certificate") or {}).get("id")
            if cert_id not in certs:
                continue
            if cert_id not in built:
                built[cert_id] = {h2: self._reuse_or_build(certs[cert_id], h2, kept) for h2 in (False, True)}
            self.by_name[sni["name"].lower()] = built[cert_id]
        _last_contexts = kept
        self._default_pair = default_pair if default_pair and all(os.path.exists(p) for p in default_pair) else None
        self._default: dict[bool, ssl.SSLContext] | None = None
        if self._default_pair is not None and (tls_listeners or _SERVES_TLS[0]):
            self._default = self._build_default(self._default_pair)

    @property
    def default(self) -> dict[bool, ssl.SSLContext] | None:
        """The default certificate's contexts; without TLS listeners (see `serves_tls`) built on
        first use: each SSL_CTX with its key costs an idle worker ~0.3 MiB."""
        if self._default is None and self._default_pair is not None:
            self._default = self._build_default(self._default_pair)
        return self._default

    @staticmethod
    def _build_default(pair: tuple[str, str]) -> dict[bool, ssl.SSLContext]:
        built = {}
        for h2 in (False, True):
            ctx = _server_context(_ALPN[h2])
            ctx.load_cert_chain(*pair)
            built[h2] = ctx
        return built

    @classmethod
    def _reuse_or_build(cls, cert: Mapping[str, Any], h2: bool, kept: dict[tuple, ssl.SSLContext]) -> ssl.SSLContext:
        key = (cert["cert"], cert["key"], cert.get("cert_alt"), cert.get("key_alt"), h2)
        ctx = _last_contexts.get(key) or cls._build(cert, h2)
        kept[key] = ctx
        return ctx

    @staticmethod
    def _build(cert: Mapping[str, Any], h2: bool) -> ssl.SSLContext:
        ctx = _server_context(_ALPN[h2])
        load_pair(ctx, cert["cert"], cert["key"])
        if cert.get("cert_alt") and cert.get("key_alt"):
            load_pair(ctx, cert["cert_alt"], cert["key_alt"])
        return ctx

    def lookup(self, name: str | None, h2: bool) -> ssl.SSLContext | None:
        if name:
            name = name.lower()
            table = self.by_name.get(name)
            if table is None:
                dot = name.find(".")
                table = self.by_name.get("*" + name[dot:]) if dot > 0 else None
            if table is not None:
                return table[h2]
        return self.default[h2] if self.default else None

    def for_pair(self, cert_pem: str, key_pem: str, h2: bool) -> ssl.SSLContext:
        """A server context for a PEM pair a `certificate` plugin chose; built once per config."""
        key = (cert_pem, key_pem, h2)
        ctx = self.pairs.get(key)
        if ctx is None:
            ctx = _server_context(_ALPN[h2])
            load_pair(ctx, cert_pem, key_pem)
            if len(self.pairs) >= _PAIRS_CACHED:
                self.pairs.clear()
            self.pairs[key] = ctx
        return ctx


class Handshake:
    """What a `certificate` phase sees of a TLS handshake (meshway.plugins.TLSHandshake).

    `client_ip` and `server_port` are None: the SNI callback runs before the connection is
    handed to the proxy, and OpenSSL's object there does not know its socket."""

    __slots__ = ("sni", "client_ip", "server_port", "context", "rejected", "_tls", "_h2")

    def __init__(self, tls: ServerTLS, sni: str | None, h2: bool, context: ssl.SSLContext | None):
        self.sni = sni
        self.client_ip: str | None = None
        self.server_port: int | None = None
        self.context = context  # what the handshake will use; None refuses it
        self.rejected = False
        self._tls = tls
        self._h2 = h2

    def set_certificate(self, cert_pem: str, key_pem: str) -> None:
        """Serve this certificate (PEM chain, leaf first) and key for this handshake."""
        self.context = self._tls.for_pair(cert_pem, key_pem, self._h2)

    def reject(self) -> None:
        """Fail the handshake (the client gets a handshake_failure alert)."""
        self.rejected = True


def run_certificate(tls: ServerTLS, name: str | None, h2: bool, chosen: ssl.SSLContext | None) -> Handshake:
    """Run the config's `certificate` phases over one handshake; never raises."""
    hs = Handshake(tls, name, h2, chosen)
    for inst in tls.certificate:
        before = hs.context
        try:
            inst.phases["certificate"][0](hs)
        except Exception as e:
            log.error("plugin %s failed in certificate phase (sni %s): %r", inst.name, name, e,
                      exc_info=(type(e), e, e.__traceback__))
            hs.context, hs.rejected = before, False
            continue
        if hs.rejected:
            break
    return hs


def sni_chooser(get_tls: Any, h2: bool) -> Any:
    """`choose(name)`: the context a handshake for SNI `name` swaps in, or the alert (an int)
    that refuses it. The config's lookup, then its `certificate` phases; used by both TLS paths."""
    def choose(name: str | None) -> ssl.SSLContext | int:
        tls = get_tls()
        if tls is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        chosen = tls.lookup(name, h2)
        if tls.certificate:
            hs = run_certificate(tls, name, h2, chosen)
            if hs.rejected:
                return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
            chosen = hs.context
        if chosen is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return chosen

    return choose


def listener_context(get_tls: Any, h2: bool, get_mesh: Any = None) -> ssl.SSLContext:
    """The context a TLS listener is created with; its SNI callback swaps in the config's choice.

    With `get_mesh` (a sidecar's transparent listener) the mesh SNI swaps in the mesh context.
    OpenSSL takes the verify mode from the listener's context, not the swapped one, so such a
    listener asks every client for an optional certificate; the H1 server then requires a
    mesh identity on mesh connections (see meshway.mesh)."""
    ctx = _server_context(_ALPN[h2])
    if get_mesh is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    choose = sni_chooser(get_tls, h2)

    def on_sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        if get_mesh is not None and is_mesh_sni(name):
            mesh_ctx = get_mesh().server_ctx
            if mesh_ctx is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            sslobj.context = mesh_ctx
            sslobj.meshway_mesh = True  # server-side SSLObjects do not keep the SNI they got
            return None
        sslobj.meshway_sni = name  # server side, `server_hostname` stays None: routing reads this
        chosen = choose(name)
        if isinstance(chosen, int):
            return chosen
        sslobj.context = chosen
        return None

    ctx.sni_callback = on_sni
    return ctx


def compiled_listener(core: Any, get_tls: Any, h2: bool) -> tuple[ssl.SSLContext, Any]:
    """The listener context and SNI chooser for the compiled transport (`_core._tlssock`): the
    context carries no certificate, the transport's C servername callback calls `choose` and
    swaps in what it answers (the context is used by that transport only)."""
    ctx = _server_context(_ALPN[h2])
    core.install_sni(ctx)
    return ctx, sni_chooser(get_tls, h2)


def client_context(service: Mapping[str, Any], ca_pems: list[str], client_cert: Mapping[str, Any] | None,
                   default_verify: bool = False) -> ssl.SSLContext:
    """The context for TLS connections to one service's upstream."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_alpn_protocols(["http/1.1"])
    verify = service.get("tls_verify")
    verify = default_verify if verify is None else verify
    if verify:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if ca_pems:
            ctx.load_verify_locations(cadata="\n".join(ca_pems))
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    depth = service.get("tls_verify_depth")
    setattr(ctx, VERIFY_DEPTH_ATTR, depth if verify and depth is not None else None)
    if client_cert:
        load_pair(ctx, client_cert["cert"], client_cert["key"])
    return ctx


VERIFY_DEPTH_ATTR = "meshway_verify_depth"


def check_verify_depth(transport: Any, ctx: ssl.SSLContext) -> None:
    """Refuse a verified chain longer than the service's `tls_verify_depth` (OpenSSL's meaning:
    the number of certificates above the leaf). Raises ssl.SSLCertVerificationError."""
    depth = getattr(ctx, VERIFY_DEPTH_ATTR, None)
    if depth is None:
        return
    sslobj = transport.get_extra_info("ssl_object")
    # Python 3.11's public SSLObject lacks get_verified_chain (3.13 adds it); the C object has it.
    chain = sslobj._sslobj.get_verified_chain() if sslobj is not None else []
    if len(chain) - 1 > depth:
        raise ssl.SSLCertVerificationError(
            f"certificate chain of depth {len(chain) - 1} exceeds tls_verify_depth {depth}")
