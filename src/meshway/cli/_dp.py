"""`meshway dp run`: kuma-dp run's flags, a meshway data plane underneath (see meshway.mesh._dp).

Flags that only configure Envoy or CoreDNS (`--binary-path`, `--envoy-log-level`,
`--dns-coredns-path`...) are accepted, so a Kuma script runs unchanged, and ignored with a notice.
`--dns-coredns-port` is Kuma 2.x's name for the port DNS is redirected to (later kuma-dp calls it
`--dns-proxy-port`): it sets our DNS proxy's port, so a script that moved it keeps working.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from urllib.parse import urlsplit

from meshway.cli._common import fail

DEFAULT_CP = "https://localhost:5678"
IGNORED = ("--binary-path", "--envoy-log-level", "--envoy-component-log-level", "--config-dir",
           "--dns-envoy-port", "--dns-coredns-path", "--dns-coredns-config-template-path",
           "--dns-prometheus-port", "--dns-coredns-empty-port", "--admin-port", "--bootstrap-request-timeout",
           "--transparent-proxy-config", "--bind-outbounds", "--transparent-proxy", "--dns-server-config-dir",
           "--envoy-admin-address")
FLAG_ONLY = ("--bind-outbounds", "--transparent-proxy")


def register(sub) -> None:
    p = sub.add_parser("dp", help="mesh data plane (kuma-dp)")
    dsub = p.add_subparsers(dest="action", metavar="ACTION")
    dsub.required = True
    q = dsub.add_parser("run", help="run a data plane for a Dataplane resource (kuma-dp run)",
                        usage="meshway dp run [flags] [-- APP ARGS...]")
    q.add_argument("--cp-address", action="append", metavar="URL",
                   help=f"control plane URL (default {DEFAULT_CP}); several control planes on one database: "
                        "repeat the flag or separate the URLs with commas (the data plane moves to another one "
                        "when its control plane goes away)")
    q.add_argument("--dataplane-token-file", help="file holding the dataplane token")
    q.add_argument("--dataplane-token", help="the dataplane token itself")
    q.add_argument("-d", "--dataplane-file", help="Dataplane resource (YAML/JSON, mustache template)")
    q.add_argument("--dataplane", help="the Dataplane resource inline (YAML or JSON)")
    q.add_argument("-v", "--dataplane-var", action="append", default=[], metavar="KEY=VALUE",
                   help="template variable; repeatable or comma separated; dotted keys nest")
    q.add_argument("--name", default="", help="the Dataplane's name (when not in the file)")
    q.add_argument("--mesh", default="", help="the Dataplane's mesh (when not in the file; default: default)")
    q.add_argument("--ca-cert-file", help="CA of the control plane's certificate (default: the one the token pins)")
    q.add_argument("--skip-verify", action="store_true", help="do not verify the control plane's certificate")
    q.add_argument("--work-dir", help="working directory (default: <tmp>/meshway-dp-<mesh>-<name>)")
    q.add_argument("--proxy-type", default="dataplane", choices=("dataplane",))
    q.add_argument("--concurrency", type=int, default=1, help="proxy worker processes (default 1)")
    q.add_argument("--drain-time", default="30s", help="how long the app may take to stop (default 30s)")
    q.add_argument("--dns-enabled", default="true", choices=("true", "false"), nargs="?", const="true",
                   help="run the DNS proxy (default true)")
    q.add_argument("--dns-proxy-port", type=int, help="DNS proxy port (default 15053)")
    q.add_argument("--dns-coredns-port", type=int, help=argparse.SUPPRESS)  # Kuma 2.x's name of the same port
    q.add_argument("--readiness-port", type=int, default=9902, help="GET /ready port on 127.0.0.1 (default 9902)")
    q.add_argument("--log-level", default="info", choices=("debug", "info", "warn", "error", "off"))
    for flag in IGNORED:
        if flag in FLAG_ONLY:
            q.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
        else:
            q.add_argument(flag, help=argparse.SUPPRESS)
    q.add_argument("app", nargs=argparse.REMAINDER, help="after --: the app to start once the data plane is ready")
    q.set_defaults(handler=_run)


def _app(rest: list[str]) -> list[str]:
    """The app's command line: what follows `--`."""
    if rest and rest[0] == "--":
        rest = rest[1:]
    elif rest:
        raise DpError(f"unexpected arguments {' '.join(rest)!r} (put the app after --)")
    return rest


class DpError(ValueError):
    pass


def _token(args) -> str:
    from meshway.mesh._tokens import clean

    if args.dataplane_token_file:
        try:
            with open(args.dataplane_token_file, encoding="utf-8") as f:
                token = clean(f.read())
        except OSError as e:
            raise DpError(f"--dataplane-token-file {args.dataplane_token_file}: {e.strerror}") from None
    else:
        token = clean(args.dataplane_token or "")
    if not token:
        raise DpError("a dataplane token is required: --dataplane-token-file FILE (see 'meshway generate dataplane-token')")
    return token


def _dataplane(args) -> dict | None:
    """The rendered, validated Dataplane (None when only --name/--mesh are given)."""
    from meshway.cli._mesh import CliError, load_documents, parse_vars, render
    from meshway.mesh._resources import ResourceError, parse_resource

    if args.dataplane_file and args.dataplane:
        raise DpError("--dataplane-file and --dataplane cannot be used together")
    text = args.dataplane
    if args.dataplane_file:
        try:
            with open(args.dataplane_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise DpError(f"--dataplane-file {args.dataplane_file}: {e.strerror}") from None
    if text is None:
        return None
    try:
        docs = load_documents(render(text, parse_vars(args.dataplane_var)))
    except CliError as e:
        raise DpError(str(e)) from None
    if len(docs) != 1:
        raise DpError(f"the Dataplane must be exactly one resource (got {len(docs)})")
    try:
        resource = parse_resource(docs[0], kind="Dataplane")
    except ResourceError as e:
        raise DpError("invalid Dataplane:" + "".join(f"\n  * {f}: {m}" for f, m in e.causes)) from None
    for flag, value in (("name", args.name), ("mesh", args.mesh)):
        if value and value != resource[flag]:
            raise DpError(f"--{flag} {value!r} does not match the Dataplane's {flag} {resource[flag]!r}")
    return resource


def _cp(address: str) -> tuple[str, int]:
    try:
        parts = urlsplit(address if "://" in address else f"https://{address}")
        port = parts.port
    except ValueError:  # a port out of range or not a number
        parts, port = None, None
    if parts is None or parts.scheme not in ("https", "grpcs") or not parts.hostname:
        raise DpError(f"--cp-address {address!r}: expected https://HOST:PORT (Kuma's data plane port is 5678)")
    return parts.hostname, port or 5678


def _cps(given: list[str] | None) -> tuple[tuple[str, int], ...]:
    """Every control plane of the (repeated, comma separated) --cp-address flags, in order, once each."""
    addresses = [a.strip() for flag in given or [DEFAULT_CP] for a in flag.split(",")]
    if not all(addresses):
        raise DpError(f"--cp-address {','.join(given or [])!r}: an empty URL in the list")
    return tuple(dict.fromkeys(_cp(a) for a in addresses))


def _ca_file(args, token: str, work_dir: str) -> str | None:
    from meshway.mesh._tokens import TokenError, pinned_ca_pem

    if args.ca_cert_file:
        return args.ca_cert_file
    try:
        pem = pinned_ca_pem(token)
    except TokenError as e:
        raise DpError(str(e)) from None
    if pem is None and not args.skip_verify:
        raise DpError("the token pins no CA: give --ca-cert-file (or --skip-verify)")
    path = os.path.join(work_dir, "cp-ca.crt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(pem or "")
    return path


def _seconds(text: str) -> float:
    from meshway.mesh._tokens import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise DpError(f"--drain-time: {e}") from None


def _run(args) -> int:
    from meshway.mesh._dp import DpOptions, listeners, prepare_work_dir, run

    try:
        dataplane = _dataplane(args)
        token = _token(args)
        cps = _cps(args.cp_address)
        (host, port) = cps[0]
        mesh = (dataplane or {}).get("mesh") or args.mesh or "default"
        name = (dataplane or {}).get("name") or args.name
        if not name:
            raise DpError("the data plane needs a name: --dataplane-file, --dataplane or --name")
        work_dir = prepare_work_dir(args.work_dir or os.path.join(tempfile.gettempdir(), f"meshway-dp-{mesh}-{name}"))
        options = DpOptions(cp_host=host, cp_port=port, token=token, ca_file=_ca_file(args, token, work_dir),
                            dataplane=dataplane, mesh=mesh, name=name, work_dir=work_dir, skip_verify=args.skip_verify,
                            dns_enabled=args.dns_enabled == "true",
                            dns_port=args.dns_proxy_port or args.dns_coredns_port or 15053,
                            readiness_port=args.readiness_port, drain_time=_seconds(args.drain_time),
                            app=_app(args.app), control_planes=cps)
    except DpError as e:
        return fail(str(e))
    for flag in IGNORED:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value not in (None, False):
            print(f"notice: {flag} is ignored (meshway has no Envoy or CoreDNS to configure)", file=sys.stderr)
    settings, conf = _settings(options, listeners(dataplane), args)
    if dataplane is None:  # --name/--mesh: listen as the stored Dataplane says (its transparentProxying ports)
        from meshway.mesh._stored import DataplaneRefused, fetch_stored

        try:
            stored = fetch_stored(settings, options)
        except DataplaneRefused as e:
            return fail(f"the control plane refused this data plane: {e}")
        if stored is not None and listeners(stored) != listeners(None):
            settings, conf = _settings(options, listeners(stored), args)
    return run(settings, conf, options)


def _settings(options, stream_listen: list[str], args):
    from meshway import logs
    from meshway.settings import load_settings

    values = {
        "prefix": options.work_dir, "role": "data_plane", "database": "off",
        "cluster_control_plane": f"{options.cp_host}:{options.cp_port}" if ":" not in options.cp_host
        else f"[{options.cp_host}]:{options.cp_port}",
        "proxy_listen": "off", "stream_listen": ", ".join(stream_listen), "admin_listen": "off",
        "status_listen": "off", "cluster_listen": "off", "mesh_dp_listen": "off",
        "workers": str(max(1, args.concurrency)), "mesh_mtls": "permissive",
        "log_level": {"warn": "warn", "off": "crit"}.get(args.log_level, args.log_level),
        "cluster_data_plane_heartbeat": "10",
    }
    conf = os.path.join(options.work_dir, "meshway-dp.conf")
    with open(conf, "w", encoding="utf-8") as f:
        f.write("".join(f"{k} = {v}\n" for k, v in values.items()))
    settings = load_settings(conf, env={})
    logs.setup(settings.log_level, settings.path(settings.proxy_error_log), stderr=True)
    return settings, conf
