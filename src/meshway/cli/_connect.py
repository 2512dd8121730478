"""`meshway connect envoy`: Consul's command for gateways, with Consul's flags.

Only the mesh gateway is run by it (`-mesh-gateway`, or Consul 1.8's `-gateway=mesh`); sidecars
are `meshway dp run` (Kuma's). Flags are Consul's single-dash ones (double dash works too);
arguments after `--` are Envoy's in Consul (`-- -l debug`) and are accepted and ignored. The
control plane is found as by `meshway config`: `-http-addr` (also `$CONSUL_HTTP_ADDR` then
`$MESHWAY_HTTP_ADDR`, as the document's containers set it; `--cp-address` is its alias), `-token`.
With `-grpc-addr` (Consul's address of the xDS server; here the zone's data plane server) the
gateway is a data plane of its zone instead: `-token`/`-token-file` is a dataplane token and no
Admin API is used (`meshway.zones._gwlink`).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

DEFAULT_CP = "http://127.0.0.1:8001"


def register(sub) -> None:
    p = sub.add_parser("connect", help="Consul's connect commands (a mesh gateway)")
    csub = p.add_subparsers(dest="connect_command", metavar="COMMAND")
    csub.required = True
    q = csub.add_parser("envoy", help="run a mesh gateway (consul connect envoy -mesh-gateway)")
    q.add_argument("-mesh-gateway", "--mesh-gateway", dest="mesh_gateway", action="store_true",
                   help="run a mesh gateway (Consul's flag)")
    q.add_argument("-gateway", "--gateway", dest="gateway", default="", help="gateway kind: mesh (Consul >= 1.8)")
    q.add_argument("-register", "--register", dest="register", action="store_true",
                   help="register the gateway in its zone's control plane")
    q.add_argument("-address", "--address", dest="address", default="",
                   help="LAN address:port the gateway binds and registers")
    q.add_argument("-wan-address", "--wan-address", dest="wan_address", default="",
                   help="WAN address:port other zones' gateways reach it at (bound too)")
    q.add_argument("-service", "--service", dest="service", default="mesh-gateway",
                   help="the gateway's service name (default mesh-gateway)")
    q.add_argument("-proxy-id", "--proxy-id", dest="proxy_id", default="", help="the registration's ID (default: the service name)")
    q.add_argument("-admin-bind", "--admin-bind", dest="admin_bind", default="127.0.0.1:19000",
                   help="the gateway proxy's Admin API (default 127.0.0.1:19000, Envoy's admin in Consul)")
    q.add_argument("-status-listen", "--status-listen", dest="status_listen", default="",
                   help="meshway: where the gateway serves /status and /metrics (default off)")
    q.add_argument("-prometheus-bind", "--prometheus-bind", dest="prometheus_bind", default="",
                   help="meshway: where to serve the gateway's per-SNI connection counts (Consul's "
                        "envoy_prometheus_bind_addr; default off)")
    q.add_argument("-prometheus-scrape-path", "--prometheus-scrape-path", dest="prometheus_path", default="/metrics",
                   help="the path of those metrics (default /metrics, Consul's flag)")
    q.add_argument("-work-dir", "--work-dir", dest="work_dir", default="",
                   help="meshway: the gateway node's prefix (default a new temporary directory)")
    q.add_argument("-http-addr", "--http-addr", "--cp-address", dest="cp", default="",
                   help=f"the control plane's Admin API (default $CONSUL_HTTP_ADDR, $MESHWAY_HTTP_ADDR, {DEFAULT_CP})")
    q.add_argument("-grpc-addr", "--grpc-addr", dest="grpc", default="",
                   help="the zone's data plane server (mesh_dp_listen, as https://10.5.0.2:5678; default "
                        "$CONSUL_GRPC_ADDR): the gateway authenticates with a dataplane token, as meshway dp run")
    q.add_argument("-token", "--token", dest="token", default="",
                   help="with -grpc-addr: the dataplane token; else the Admin API token (default $CONSUL_HTTP_TOKEN)")
    q.add_argument("-token-file", "--token-file", dest="token_file", default="",
                   help="a file holding that token (Consul's flag)")
    q.add_argument("-ca-file", "--ca-file", dest="ca_file", default="",
                   help="with -grpc-addr: the CA of the data plane server (default: the one the token pins)")
    q.add_argument("envoy_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    q.set_defaults(handler=_envoy)


def _url(value: str) -> str:
    return value if "://" in value else f"http://{value}"


def _check(args) -> str | None:
    if not args.mesh_gateway and args.gateway != "mesh":
        if args.gateway:
            return f'-gateway: "{args.gateway}" is not supported (only "mesh")'
        return "only mesh gateways are run by this command (-mesh-gateway or -gateway=mesh); sidecars are meshway dp run"
    if not args.address:
        return "-address is required (the LAN address:port to bind, as 10.5.0.33:8443)"
    from meshway.zones._catalog import RegistrationError, gateway_record
    from meshway.zones._gwrun import registration

    try:
        gateway_record(registration(args.service, args.proxy_id or args.service, args.address, args.wan_address))
    except (RegistrationError, ValueError) as e:
        return f"-address/-wan-address: {e}"
    return None


def _envoy(args) -> int:
    from meshway.zones._gwrun import Gateway

    problem = _check(args)
    if problem:
        print(f"Error: {problem}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    extra = [a for a in args.envoy_args if a != "--"]
    if extra:
        logging.getLogger("meshway.zones.gateway").info("Envoy arguments ignored: %s", " ".join(extra))
    cp = args.cp or os.environ.get("CONSUL_HTTP_ADDR") or os.environ.get("MESHWAY_HTTP_ADDR") or DEFAULT_CP
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="meshway-gateway-"))
    gateway = Gateway(cp=_url(cp), token=args.token or os.environ.get("CONSUL_HTTP_TOKEN") or None,
                      service=args.service, gid=args.proxy_id or args.service, lan=args.address,
                      wan=args.wan_address, register=args.register, work_dir=work, admin_bind=args.admin_bind,
                      status_listen=args.status_listen, prometheus_bind=args.prometheus_bind,
                      prometheus_path=args.prometheus_path)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: gateway.stop.set())
    grpc = args.grpc or os.environ.get("CONSUL_GRPC_ADDR", "")
    if grpc:
        return _over_link(args, gateway, grpc, work)
    return gateway.run()


def _over_link(args, gateway, address: str, work: Path) -> int:
    """The gateway as a data plane of its zone: dataplane token, the data plane server's push."""
    import asyncio

    from meshway.mesh._tokens import TokenError, pinned_ca_pem, unverified_claims
    from meshway.zones._gwlink import GatewayLink, token_text

    try:
        token = token_text(args.token, args.token_file).strip()
        claims = unverified_claims(token) if token else {}
        pem = pinned_ca_pem(token) if token else None
    except (OSError, TokenError, ValueError) as e:
        print(f"Error: -token/-token-file: {e}", file=sys.stderr)
        return 1
    if not token:
        print("Error: -grpc-addr needs a dataplane token (-token-file; see meshway generate dataplane-token)",
              file=sys.stderr)
        return 1
    host, port = _host_port(address)
    if not args.proxy_id and claims.get("Name"):  # the token names the gateway: register under that name
        gateway.gid = claims["Name"]
    ca_file = args.ca_file
    if not ca_file and pem:
        ca_file = str(work / "cp-ca.crt")
        work.mkdir(parents=True, exist_ok=True)
        Path(ca_file).write_text(pem)
    link = GatewayLink(gateway, cp_host=host, cp_port=port, token=token, ca_file=ca_file or None,
                       mesh=claims.get("Mesh") or "default")
    return asyncio.run(link.run())


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return rest.strip("[]"), 5678  # Kuma's port of the data plane server
    return host.strip("[]"), int(port)
