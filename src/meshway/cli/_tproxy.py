"""meshway install|uninstall transparent-proxy: `kumactl install|uninstall transparent-proxy`'s flags.

Exit codes: 0 done, 2 bad input (nothing changed), 1 the host refused the change.
"""
from __future__ import annotations

import argparse
import os
import sys

# (flag, config path, kind): kind "bool" takes an optional =true/false as pflag does, "list" repeats
FLAGS = (
    ("--kuma-dp-user", "kumaDPUser", "str", "username or UID of the user running meshway dp "
     "(default: UID 5678, else user kuma-dp)"),
    ("--redirect-inbound", "redirect.inbound.enabled", "bool", "redirect inbound traffic (default true; false for gateways)"),
    ("--redirect-inbound-port", "redirect.inbound.port", "str", "inbound redirect port (default 15006)"),
    ("--redirect-outbound-port", "redirect.outbound.port", "str", "outbound redirect port (default 15001)"),
    ("--redirect-dns", "redirect.dns.enabled", "bool", "redirect DNS to the servers of /etc/resolv.conf to the DNS port"),
    ("--redirect-all-dns-traffic", "redirect.dns.captureAll", "bool", "redirect all UDP/53 traffic to the DNS port"),
    ("--redirect-dns-port", "redirect.dns.port", "str", "port of the data plane's DNS proxy (default 15053)"),
    ("--skip-dns-conntrack-zone-split", "redirect.dns.skipConntrackZoneSplit", "bool", "no conntrack zones for DNS"),
    ("--exclude-inbound-ports", "redirect.inbound.excludePorts", "str", "comma list of inbound ports not redirected "
     "(22 always is, unless --redirect-inbound-ssh)"),
    ("--redirect-inbound-ssh", "redirect.inbound.redirectSSH", "bool", "redirect inbound port 22 too (off: SSH stays reachable)"),
    ("--exclude-outbound-ports", "redirect.outbound.excludePorts", "str", "comma list of outbound ports not redirected"),
    ("--exclude-inbound-ips", "redirect.inbound.excludePortsForIPs", "list", "source IPs/CIDRs not redirected (repeatable)"),
    ("--exclude-outbound-ips", "redirect.outbound.excludePortsForIPs", "list", "destination IPs/CIDRs not redirected (repeatable)"),
    ("--exclude-outbound-ports-for-uids", "redirect.outbound.excludePortsForUIDs", "list",
     "[protocol:][ports:]uids not redirected, e.g. 53,3000-5000:106-108 (repeatable)"),
    ("--ip-family-mode", "ipFamilyMode", "str", "dualstack (default) or ipv4"),
    ("--drop-invalid-packets", "dropInvalidPackets", "bool", "drop packets in conntrack state INVALID (mangle table)"),
    ("--vnet", "redirect.vnet.networks", "list", "ifaceRegex:CIDR of a virtual network, e.g. docker0:172.17.0.0/16"),
    ("--store-firewalld", "storeFirewalld", "bool", "also write the rules to /etc/firewalld/direct.xml"),
    ("--iptables-logs", "log.enabled", "bool", "LOG matching packets (kernel log, level 7)"),
    ("--wait", "wait", "str", "seconds to wait for the xtables lock (default 5)"),
    ("--wait-interval", "waitInterval", "str", "microseconds between lock attempts (default 0)"),
    ("--max-retries", "retry.maxRetries", "str", "retries while the xtables lock is held (default 4)"),
    ("--sleep-between-retries", "retry.sleepBetweenRetries", "str", "pause between retries (default 2s)"),
    ("--redirect-inbound-insert-instead-of-append", "redirect.inbound.insertRedirectInsteadOfAppend", "bool",
     "insert the PREROUTING jump first instead of appending it"),
    ("--redirect-outbound-insert-instead-of-append", "redirect.outbound.insertRedirectInsteadOfAppend", "bool",
     "insert the OUTPUT jump first instead of appending it"),
    ("--iptables-executables", "iptablesExecutables", "str", "name:path[,name:path...] for iptables, iptables-save, ..."),
    ("--disable-comments", "comments.disabled", "bool", "refused: uninstall finds meshway's rules by their comments"),
    ("--dry-run", "dryRun", "bool", "show the change against the current rules; change nothing"),
    ("--verbose", "verbose", "bool", "say more"),
)


def register(sub) -> None:
    for verb, handler in (("install", _install), ("uninstall", _uninstall)):
        p = sub.add_parser(verb, help=f"{verb} host-level mesh components (transparent-proxy)")
        what = p.add_subparsers(dest="what", metavar="WHAT")
        what.required = True
        q = what.add_parser("transparent-proxy", help=f"{verb} the transparent proxy's iptables rules",
                            argument_default=argparse.SUPPRESS)
        for flag, path, kind, text in FLAGS:
            if verb == "uninstall" and flag not in ("--dry-run", "--verbose"):
                continue
            if kind == "bool":
                q.add_argument(flag, nargs="?", const="true", metavar="true|false", help=text)
            elif kind == "list":
                q.add_argument(flag, action="append", help=text)
            else:
                q.add_argument(flag, help=text)
        if verb == "install":
            q.add_argument("--config", action="append", help="config file(s), comma list or - for stdin (YAML/JSON, "
                           "Kuma's keys); repeatable, later ones win")
        # Where firewalld's direct.xml is; tests point it at a scratch file.
        q.add_argument("--firewalld-direct-xml", help=argparse.SUPPRESS)
        q.set_defaults(handler=handler)


def _overrides(args: argparse.Namespace) -> list[tuple[str, object]]:
    out = []
    for flag, path, kind, _ in FLAGS:
        dest = flag[2:].replace("-", "_")
        if hasattr(args, dest):
            out.append((path, getattr(args, dest)))
    return out


def _settings(args: argparse.Namespace):
    from meshway.mesh import tproxy
    from meshway.mesh.tproxy._config import parse_bool

    given = dict(_overrides(args))
    if parse_bool(given.get("redirect.dns.enabled", False), "--redirect-dns") and \
            parse_bool(given.get("redirect.dns.captureAll", False), "--redirect-all-dns-traffic"):
        raise tproxy.TproxyError("only one of '--redirect-dns' or '--redirect-all-dns-traffic' should be specified")
    values = tproxy.load_sources(getattr(args, "config", []), dict(os.environ), sys.stdin)
    for path, value in given.items():
        values = tproxy.set_path(values, path, value)
    return tproxy.validate(values)


def _run(args: argparse.Namespace, action: str) -> int:
    from meshway.mesh import tproxy
    from meshway.mesh.tproxy._firewalld import DEFAULT_PATH

    try:
        settings = _settings(args)
        if settings.verbose and action == "install":
            from meshway.mesh.tproxy._config import settings_json
            print(f"# settings: {settings_json(settings)}", file=sys.stderr)
        path = getattr(args, "firewalld_direct_xml", None) or DEFAULT_PATH
        return getattr(tproxy, action)(settings, path)
    except tproxy.TproxyError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code


def _install(args: argparse.Namespace) -> int:
    return _run(args, "install")


def _uninstall(args: argparse.Namespace) -> int:
    return _run(args, "uninstall")
