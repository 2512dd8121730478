"""`meshway ingress-controller`: the Kong Ingress Controller's job, with KIC's flag names and defaults."""
from __future__ import annotations

import argparse
import logging


def register(sub) -> None:
    p = sub.add_parser("ingress-controller",
                       help="translate Ingress, Gateway API and Kong resources, push them to a node "
                            "(DB-less, traditional or control plane)")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster or $KUBECONFIG)")
    p.add_argument("--kong-admin-url", default="http://localhost:8001",
                   help="Admin API of the node receiving POST /config (default: http://localhost:8001)")
    p.add_argument("--ingress-class", default="kong", help="the ingress class to satisfy (default: kong)")
    p.add_argument("--watch-namespace", default="",
                   help="watch only these namespaces, comma-separated (default: all namespaces)")
    p.add_argument("--proxy-sync-seconds", type=float, default=3.0,
                   help="seconds between configuration pushes (default: 3)")
    p.add_argument("--emit-kubernetes-events", type=_flag, nargs="?", const=True, default=True, metavar="BOOL",
                   help="write a Warning event on each object left out of the configuration (default: true)")
    p.add_argument("--gateway-api-controller-name", default="konghq.com/kic-gateway-controller",
                   help="GatewayClass controllerName served (default: KIC's konghq.com/kic-gateway-controller)")
    p.add_argument("--update-status", type=_flag, nargs="?", const=True, default=True, metavar="BOOL",
                   help="write Ingress and Gateway API status (default: true)")
    p.add_argument("--publish-service", default="", metavar="NAMESPACE/NAME",
                   help="Service whose address is published in Ingress and Gateway status")
    p.add_argument("--publish-status-address", default="", metavar="ADDRESSES",
                   help="comma-separated addresses published in status (instead of --publish-service)")
    p.add_argument("--health-probe-bind-address", default=":10254", metavar="[HOST]:PORT",
                   help="GET /healthz and /readyz (ready once a configuration reached the node), or off "
                        "(default: :10254)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=_run)


def _flag(value: str) -> bool:
    """KIC's boolean flags take `--flag`, `--flag=true` or `--flag=false`."""
    if value.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


def _run(args) -> int:
    from meshway.k8s._controller import Options, run  # lightkube is only imported by this command
    from meshway.k8s._probes import parse_bind

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore"):  # one line per watch request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.publish_service and "/" not in args.publish_service:
        print("Error: --publish-service must be NAMESPACE/NAME", flush=True)
        return 1
    try:
        probes = parse_bind(args.health_probe_bind_address)
    except ValueError as e:
        print(f"Error: --health-probe-bind-address: {e}", flush=True)
        return 1
    if args.proxy_sync_seconds <= 0:
        print("Error: --proxy-sync-seconds must be positive", flush=True)
        return 1
    options = Options(args.kong_admin_url.rstrip("/"), args.ingress_class, args.watch_namespace,
                      args.proxy_sync_seconds, args.emit_kubernetes_events, args.gateway_api_controller_name,
                      args.update_status, args.publish_service,
                      tuple(a.strip() for a in args.publish_status_address.split(",") if a.strip()), probes)
    import asyncio  # here: every `meshway` command imports this module (asyncio is ~0.2G instructions)

    asyncio.run(run(args.kubeconfig, options))
    return 0
