"""The transparent proxy's iptables rules, as `iptables-restore --noflush` text. Pure: no host access.

Theory of operation (Kuma's design, which meshway keeps so a Kuma user's debugging carries over):
- nat PREROUTING sends inbound TCP to KUMA_MESH_INBOUND: excluded ports and sources RETURN, the rest
  goes to KUMA_MESH_INBOUND_REDIRECT, which REDIRECTs to the inbound port (15006).
- nat OUTPUT sends outbound TCP to KUMA_MESH_OUTBOUND: traffic of the data plane's own user RETURNs
  (its upstream connections must leave as they are), except its connections to a local non-127.0.0.1
  address, which are inbound traffic for the local app; other loopback traffic RETURNs; the rest
  goes to KUMA_MESH_OUTBOUND_REDIRECT, which REDIRECTs to the outbound port (15001).
- DNS: UDP/53 to the resolvers (or all UDP/53) REDIRECTs to the data plane's DNS port, except the
  data plane's own lookups; the raw table splits conntrack zones (1: data plane <-> resolver, 2:
  app <-> data plane) so the two legs of a lookup never share a conntrack entry.

Every rule carries a comment starting with COMMENT_PREFIX: uninstall finds meshway's rules by it.
Rules are written in the canonical form `iptables-save` prints them in (option order, explicit
`-m tcp`/`-m udp`, CIDR suffixes), so the text read back after an install equals the text written
here, and a dry run can compute the host's rules after the change without touching them.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ._config import SSH_PORT, Settings

CHAIN_PREFIX = "KUMA_MESH"
COMMENT_PREFIX = "meshway/mesh/transparent/proxy/"
KUMA_COMMENT_PREFIX = "kuma/mesh/transparent/proxy/"
INBOUND, INBOUND_REDIRECT = f"{CHAIN_PREFIX}_INBOUND", f"{CHAIN_PREFIX}_INBOUND_REDIRECT"
OUTBOUND, OUTBOUND_REDIRECT = f"{CHAIN_PREFIX}_OUTBOUND", f"{CHAIN_PREFIX}_OUTBOUND_REDIRECT"
CUSTOM_CHAINS = (INBOUND, INBOUND_REDIRECT, OUTBOUND, OUTBOUND_REDIRECT)
BUILTIN_CHAINS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}
TABLE_ORDER = ("raw", "nat", "mangle")
DNS_PORT = 53


@dataclass(frozen=True)
class Family:
    """The host facts one IP family's rules depend on."""

    ipv6: bool
    uid: str
    loopback: str = "lo"
    dns_servers: tuple[str, ...] = ()

    @property
    def localhost(self) -> str:
        return "::1/128" if self.ipv6 else "127.0.0.1/32"

    @property
    def passthrough(self) -> str:
        return "::6/128" if self.ipv6 else "127.0.0.6/32"

    def mine(self, cidr: str) -> bool:
        return (":" in cidr) == self.ipv6


@dataclass(frozen=True)
class Rule:
    """One rule: where it goes and its canonical specification."""

    table: str
    chain: str
    spec: str
    insert: bool = False


def spec(comment: str, *, s: str = "", d: str = "", not_d: str = "", i: str = "", o: str = "", p: str = "",
         m: tuple[str, ...] = (), j: str) -> str:
    """A rule specification in iptables-save's option order."""
    parts = [f"-s {s}" if s else "", f"-d {d}" if d else "", f"! -d {not_d}" if not_d else "",
             f"-i {i}" if i else "", f"-o {o}" if o else "", f"-p {p}" if p else "",
             f'-m comment --comment "{COMMENT_PREFIX}{comment}"', *m, f"-j {j}"]
    return " ".join(x for x in parts if x)


def port_match(proto: str, port: int, direction: str = "dport") -> str:
    return f"-m {proto} --{direction} {port}"


def owner(uid: str, negate: bool = False) -> str:
    return f"-m owner {'! ' if negate else ''}--uid-owner {uid}"


# -- nat ---------------------------------------------------------------------------------------


def inbound_chain(cfg: Settings, fam: Family) -> list[Rule]:
    flow = cfg.inbound
    if not flow.enabled:
        return [Rule("nat", INBOUND, spec("inbound traffic redirection is disabled", p="tcp", j="RETURN"))]
    rules = [Rule("nat", INBOUND, spec("skip further processing for configured IP address", s=ip, j="RETURN"))
             for ip in flow.exclude_ips if fam.mine(ip)]
    for port in flow.include_ports:
        rules.append(Rule("nat", INBOUND, spec(f"redirect inbound traffic from port {port} to the custom chain for processing",
                                               p="tcp", m=(port_match("tcp", port),), j=INBOUND_REDIRECT)))
    if flow.include_ports:
        return rules
    for port in inbound_excluded_ports(cfg):
        text = f"exclude inbound traffic from port {port} from redirection"
        if port == SSH_PORT and not flow.redirect_ssh:
            text += " (SSH stays reachable; --redirect-inbound-ssh redirects it)"
        rules.append(Rule("nat", INBOUND, spec(text, p="tcp", m=(port_match("tcp", port),), j="RETURN")))
    rules.append(Rule("nat", INBOUND, spec("redirect all inbound traffic to the custom chain for processing",
                                           p="tcp", j=INBOUND_REDIRECT)))
    return rules


def inbound_excluded_ports(cfg: Settings) -> tuple[int, ...]:
    """The user's list, with 22 first unless the user asked to redirect SSH."""
    ports = cfg.inbound.exclude_ports
    if cfg.inbound.redirect_ssh or SSH_PORT in ports:
        return ports
    return (SSH_PORT, *ports)


def outbound_chain(cfg: Settings, fam: Family) -> list[Rule]:
    flow, uid = cfg.outbound, fam.uid
    if not flow.enabled:
        return [Rule("nat", OUTBOUND, spec("outbound traffic redirection is disabled", p="tcp", j="RETURN"))]
    rules = [] if flow.include_ports else [
        Rule("nat", OUTBOUND, spec(f"exclude outbound traffic from port {port} from redirection",
                                   p="tcp", m=(port_match("tcp", port),), j="RETURN"))
        for port in flow.exclude_ports]
    rules += [
        Rule("nat", OUTBOUND, spec(
            f"prevent traffic loops by ensuring traffic from the sidecar proxy (using {fam.passthrough}) "
            "to loopback interface is not redirected again", s=fam.passthrough, o=fam.loopback, j="RETURN")),
        Rule("nat", OUTBOUND, spec(
            f"redirect outbound TCP traffic destined for loopback interface, but not targeting address "
            f"{fam.localhost}, and owned by UID {uid} (kuma-dp user) to {INBOUND_REDIRECT} chain for proper handling",
            not_d=fam.localhost, o=fam.loopback, p="tcp", m=(owner(uid),), j=INBOUND_REDIRECT)),
        Rule("nat", OUTBOUND, spec(
            f"return outbound TCP traffic destined for loopback interface, owned by any UID other than {uid} (kuma-dp user)",
            o=fam.loopback, p="tcp", m=(owner(uid, negate=True),), j="RETURN")),
        Rule("nat", OUTBOUND, spec(f"return outbound traffic owned by UID {uid} (kuma-dp user)", m=(owner(uid),), j="RETURN")),
        Rule("nat", OUTBOUND, spec(f"return traffic destined for localhost ({fam.localhost}) to avoid redirection",
                                   d=fam.localhost, j="RETURN")),
    ]
    rules += [Rule("nat", OUTBOUND, spec(f"redirect outbound TCP traffic to port {port} to our custom chain for further processing",
                                         p="tcp", m=(port_match("tcp", port),), j=OUTBOUND_REDIRECT))
              for port in flow.include_ports]
    if not flow.include_ports:
        rules.append(Rule("nat", OUTBOUND, spec("redirect all other outbound traffic to our custom chain for further processing",
                                                j=OUTBOUND_REDIRECT)))
    return rules


def redirect_chain(chain: str, port: int) -> list[Rule]:
    return [Rule("nat", chain, spec(f"redirect TCP traffic to the data plane proxy (port {port})",
                                    p="tcp", j=f"REDIRECT --to-ports {port}"))]


def dns_active(cfg: Settings, fam: Family) -> bool:
    return cfg.dns_enabled and (cfg.dns_capture_all or bool(fam.dns_servers))


def output_rules(cfg: Settings, fam: Family) -> list[Rule]:
    """nat OUTPUT, in Kuma's order: inserted rules first (they must win over foreign ones)."""
    uid, rules = fam.uid, []
    if cfg.log_enabled:
        rules.append(Rule("nat", "OUTPUT", spec("log matching packets using kernel logging",
                                                j=f'LOG --log-prefix "OUTPUT:" --log-level {cfg.log_level}'), True))
    for ex in cfg.outbound.uid_exclusions:
        rules.append(Rule("nat", "OUTPUT", spec("skip further processing for configured IP addresses, ports and UIDs",
                                                p=ex.protocol, m=(f"-m multiport --dports {ex.ports}", owner(ex.uids)),
                                                j="RETURN"), True))
    for ip in cfg.outbound.exclude_ips:
        if fam.mine(ip):
            rules.append(Rule("nat", "OUTPUT", spec("skip further processing for configured IP addresses, ports and UIDs",
                                                    d=ip, j="RETURN"), True))
    if dns_active(cfg, fam):
        rules += dns_output_rules(cfg, fam, uid)
    rules.append(Rule("nat", "OUTPUT", spec("redirect outbound TCP traffic to our custom chain for processing",
                                            p="tcp", j=OUTBOUND), cfg.outbound.insert))
    return rules


def dns_output_rules(cfg: Settings, fam: Family, uid: str) -> list[Rule]:
    to = f"REDIRECT --to-ports {cfg.dns_port}"
    rules = [
        Rule("nat", "OUTPUT", spec("return early for DNS traffic from kuma-dp", p="udp",
                                   m=(port_match("udp", DNS_PORT), owner(uid)), j="RETURN"), True),
        Rule("nat", "OUTPUT", spec(
            f"allow applications to perform DNS queries over TCP to port {DNS_PORT} without mesh redirection "
            f"(only traffic not owned by UID {uid} (kuma-dp user))",
            p="tcp", m=(port_match("tcp", DNS_PORT), owner(uid, negate=True)), j="RETURN")),
    ]
    if cfg.dns_capture_all:
        return rules + [Rule("nat", "OUTPUT", spec(
            f"redirect all DNS requests to the kuma-dp DNS proxy (listening on port {cfg.dns_port})",
            p="udp", m=(port_match("udp", DNS_PORT),), j=to), True)]
    return rules + [Rule("nat", "OUTPUT", spec(
        f"redirect DNS requests to {server} to the kuma-dp DNS proxy (listening on port {cfg.dns_port})",
        d=host_cidr(server), p="udp", m=(port_match("udp", DNS_PORT),), j=to), True) for server in fam.dns_servers]


def host_cidr(address: str) -> str:
    return f"{address}/128" if ":" in address else f"{address}/32"


def prerouting_rules(cfg: Settings, fam: Family) -> list[Rule]:
    rules = []
    if cfg.log_enabled:
        rules.append(Rule("nat", "PREROUTING", spec("log matching packets using kernel logging",
                                                    j=f'LOG --log-prefix "PREROUTING:" --log-level {cfg.log_level}')))
    vnets = sorted((iface, cidr) for iface, cidr in cfg.vnets if fam.mine(cidr))
    if not vnets and not cfg.inbound.insert:
        return rules + [Rule("nat", "PREROUTING", spec("redirect inbound TCP traffic to our custom chain for processing",
                                                       p="tcp", j=INBOUND))]
    for iface, cidr in vnets:
        rules += [
            Rule("nat", "PREROUTING", spec(
                f"redirect DNS requests on interface {iface} to the kuma-dp DNS proxy (listening on port {cfg.dns_port})",
                i=iface, p="udp", m=(port_match("udp", DNS_PORT),), j=f"REDIRECT --to-ports {cfg.dns_port}"), True),
            Rule("nat", "PREROUTING", spec(
                f"redirect TCP traffic on interface {iface}, excluding destination {cidr}, to the outbound port "
                f"{cfg.outbound.port} of the data plane proxy",
                not_d=cidr, i=iface, p="tcp", j=f"REDIRECT --to-ports {cfg.outbound.port}"), True),
        ]
    return rules + [Rule("nat", "PREROUTING", spec("redirect remaining TCP traffic to our custom chain for processing",
                                                   p="tcp", j=INBOUND), True)]


# -- raw and mangle ------------------------------------------------------------------------------


def raw_rules(cfg: Settings, fam: Family) -> list[Rule]:
    if not (dns_active(cfg, fam) and cfg.dns_conntrack_split):
        return []
    uid, ct1, ct2 = fam.uid, "CT --zone 1", "CT --zone 2"
    out = [
        Rule("raw", "OUTPUT", spec(f"assign connection tracking zone 1 to DNS traffic from the kuma-dp user (UID {uid})",
                                   p="udp", m=(port_match("udp", DNS_PORT), owner(uid)), j=ct1)),
        Rule("raw", "OUTPUT", spec("assign connection tracking zone 2 to DNS responses from the kuma-dp DNS proxy",
                                   p="udp", m=(port_match("udp", cfg.dns_port, "sport"), owner(uid)), j=ct2)),
    ]
    out = vnet_zone_rules(cfg, fam) + out
    if cfg.dns_capture_all:
        return out + [
            Rule("raw", "OUTPUT", spec("assign connection tracking zone 2 to all DNS requests",
                                       p="udp", m=(port_match("udp", DNS_PORT),), j=ct2)),
            Rule("raw", "PREROUTING", spec("assign connection tracking zone 1 to all DNS responses",
                                           p="udp", m=(port_match("udp", DNS_PORT, "sport"),), j=ct1)),
        ]
    pre = []
    for server in fam.dns_servers:
        cidr = host_cidr(server)
        out.append(Rule("raw", "OUTPUT", spec(f"assign connection tracking zone 2 to DNS requests destined for {server}",
                                              d=cidr, p="udp", m=(port_match("udp", DNS_PORT),), j=ct2)))
        if ipaddress.ip_address(server).is_loopback:  # a local resolver answers through OUTPUT, not PREROUTING
            out.append(Rule("raw", "OUTPUT", spec(
                "assign conntrack zone 1 to DNS responses from the local DNS server to localhost, needed when "
                "the DNS query port is altered by a DNAT iptables rule, such as with Docker containers in a custom network",
                s=cidr, d=fam.localhost, p="udp", j=ct1)))
        pre.append(Rule("raw", "PREROUTING", spec(f"assign connection tracking zone 1 to DNS responses from {server}",
                                                  s=cidr, p="udp", m=(port_match("udp", DNS_PORT, "sport"),), j=ct1)))
    return pre + out


def vnet_zone_rules(cfg: Settings, fam: Family) -> list[Rule]:
    """Not in Kuma: queries arriving from a virtual network are redirected to the DNS proxy in nat
    PREROUTING, and the proxy's answers are put in zone 2, so the queries must be in zone 2 as well,
    or the answers miss their conntrack entry and leave un-NATed (Kuma's --vnet DNS needs
    --skip-dns-conntrack-zone-split for that reason)."""
    return [Rule("raw", "PREROUTING", spec(
        f"assign connection tracking zone 2 to DNS requests from the virtual network on interface {iface}",
        i=iface, p="udp", m=(port_match("udp", DNS_PORT),), j="CT --zone 2"))
        for iface in sorted({iface for iface, cidr in cfg.vnets if fam.mine(cidr)})]


def mangle_rules(cfg: Settings) -> list[Rule]:
    if not cfg.drop_invalid:
        return []
    return [Rule("mangle", "PREROUTING", spec(
        "drop packets in the INVALID state to prevent potential issues with malformed or out-of-order packets",
        m=("-m conntrack --ctstate INVALID",), j="DROP"))]


# -- the restore text ------------------------------------------------------------------------------


def all_rules(cfg: Settings, fam: Family) -> list[Rule]:
    return [
        *raw_rules(cfg, fam), *prerouting_rules(cfg, fam), *output_rules(cfg, fam), *inbound_chain(cfg, fam),
        *redirect_chain(INBOUND_REDIRECT, cfg.inbound.port), *outbound_chain(cfg, fam),
        *redirect_chain(OUTBOUND_REDIRECT, cfg.outbound.port), *mangle_rules(cfg),
    ]


def render(cfg: Settings, fam: Family) -> str:
    """The `iptables-restore --noflush` text installing the rules on a host that has none of them."""
    rules = all_rules(cfg, fam)
    blocks = []
    for table in TABLE_ORDER:
        mine = [r for r in rules if r.table == table]
        if not mine:
            continue
        lines = [f"*{table}"] + ([f"-N {c}" for c in CUSTOM_CHAINS] if table == "nat" else [])
        positions: dict[str, int] = {}
        for rule in mine:
            if rule.insert:
                positions[rule.chain] = positions.get(rule.chain, 0) + 1
                lines.append(f"-I {rule.chain} {positions[rule.chain]} {rule.spec}")
            else:
                lines.append(f"-A {rule.chain} {rule.spec}")
        blocks.append("\n".join(lines + ["COMMIT"]))
    return "\n".join(blocks) + "\n"
