"""Transparent proxy settings: Kuma's keys, defaults and precedence, validated into frozen values.

Precedence is Kuma's: defaults, then each `--config` source in order (YAML or JSON, Kuma's JSON keys
such as `redirect.dns.enabled`), then `KUMA_TRANSPARENT_PROXY_*` environment variables (and
`MESHWAY_TRANSPARENT_PROXY_*`, which win over the KUMA_ spelling), then command-line flags.
Everything here is pure except `load_sources` (reads files and the environment).

Where meshway departs from Kuma, on purpose:
- inbound port 22 is excluded unless `redirect.inbound.redirectSSH` (`--redirect-inbound-ssh`) is
  set: Kuma's default exclude list is empty and its users lock themselves out (kuma-website#1527);
- `comments.disabled` is refused: uninstall finds meshway's rules by their comments.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from meshway.settings import TPROXY_ENV_PREFIX

ENV_PREFIXES = ("KUMA_TRANSPARENT_PROXY_", TPROXY_ENV_PREFIX)
DEFAULT_UID = "5678"
DEFAULT_USERNAME = "kuma-dp"
SSH_PORT = 22
EXECUTABLE_NAMES = ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore")


class TproxyError(Exception):
    """Bad input (exit 2: nothing was changed) or a failed apply (exit 1)."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _flow_defaults(port: int) -> dict:
    return {"enabled": True, "port": port, "includePorts": [], "excludePorts": [], "excludePortsForUIDs": [],
            "excludePortsForIPs": [], "insertRedirectInsteadOfAppend": False}


def default_values() -> dict:
    """Kuma's DefaultConfig() as the nested dict its config files use."""
    return {
        "kumaDPUser": "", "ipFamilyMode": "dualstack",
        "redirect": {
            "inbound": {**_flow_defaults(15006), "redirectSSH": False}, "outbound": _flow_defaults(15001),
            "dns": {"enabled": False, "port": 15053, "captureAll": False, "skipConntrackZoneSplit": False,
                    "resolvConfigPath": "/etc/resolv.conf"},
            "vnet": {"networks": []},
        },
        "log": {"enabled": False, "level": 7}, "wait": 5, "waitInterval": 0,
        "retry": {"maxRetries": 4, "sleepBetweenRetries": "2s"}, "comments": {"disabled": False},
        "iptablesExecutables": {}, "dropInvalidPackets": False, "storeFirewalld": False,
        "verbose": False, "dryRun": False, "cniMode": False,
    }


# -- reading the sources ----------------------------------------------------------------------


def _leaves(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key != "iptablesExecutables":
            out.update(_leaves(value, path + "."))
        else:
            out[path] = value
    return out


LEAF_PATHS = tuple(_leaves(default_values()))


def _env_name(path: str) -> str:
    acronyms = path.replace("IPs", "Ips").replace("UIDs", "Uids").replace("DP", "Dp")
    words = [re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", part) for part in acronyms.split(".")]
    return "_".join(words).upper()


ENV_KEYS = {_env_name(p): p for p in LEAF_PATHS}


def merge(base: dict, overlay: dict, where: str, prefix: str = "") -> dict:
    """Deep-merge `overlay` into a copy of `base`; an unknown key is an error naming it."""
    out = dict(base)
    for key, value in overlay.items():
        path = f"{prefix}{key}"
        if key not in base:
            raise TproxyError(f"{where}: unknown configuration key '{path}'")
        if isinstance(base[key], dict) and key != "iptablesExecutables":
            if not isinstance(value, dict):
                raise TproxyError(f"{where}: '{path}' must be a mapping")
            out[key] = merge(base[key], value, where, path + ".")
        else:
            out[key] = value
    return out


def set_path(tree: dict, path: str, value: Any) -> dict:
    head, _, rest = path.partition(".")
    out = dict(tree)
    out[head] = set_path(tree[head], rest, value) if rest else value
    return out


def parse_document(text: str, where: str) -> dict:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise TproxyError(f"{where}: not valid YAML or JSON: {e}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise TproxyError(f"{where}: the configuration must be a mapping of Kuma's keys")
    return doc


def env_overrides(environ: dict[str, str]) -> list[tuple[str, str, str]]:
    """(variable, path, raw value) for each transparent proxy variable; MESHWAY_ ones last so they win."""
    found = []
    for prefix in ENV_PREFIXES:
        for name, value in sorted(environ.items()):
            if name.startswith(prefix) and name[len(prefix):] in ENV_KEYS:
                found.append((name, ENV_KEYS[name[len(prefix):]], value))
    return found


def load_sources(config_values: list[str], environ: dict[str, str], stdin) -> dict:
    """Defaults, then every --config source, then the environment (flags come after, in the CLI)."""
    values = default_values()
    for value in config_values:
        for source in [s.strip() for s in value.split(",") if s.strip()] or ["-"]:
            if source == "-":
                text, where = stdin.read(), "config from stdin"
            else:
                try:
                    with open(source, encoding="utf-8") as f:
                        text = f.read()
                except OSError as e:
                    raise TproxyError(f"--config: cannot read {source}: {e.strerror}") from None
                where = f"config file {source}"
            values = merge(values, parse_document(text, where), where)
    for name, path, raw in env_overrides(environ):
        values = set_path(values, path, _env_value(path, raw))
    return values


def _env_value(path: str, raw: str) -> Any:
    default = _leaves(default_values())[path]
    if isinstance(default, list):
        return [s for s in raw.split(",") if s.strip()]
    return raw


# -- validation into frozen settings ----------------------------------------------------------


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise TproxyError(f"{name}: value '{value}' is not a boolean (true or false)")


def parse_port(value: Any, name: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise TproxyError(f"{name}: value '{value}' is not a valid port (uint16 in the range [1, 65535])")
    return int(text)


def parse_ports(value: Any, name: str) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    ports = []
    for item in items:
        ports += [parse_port(p, name) for p in str(item).split(",") if p.strip()]
    return tuple(dict.fromkeys(ports))


def parse_uint(value: Any, name: str) -> int:
    text = str(value).strip()
    if not text.isdigit():
        raise TproxyError(f"{name}: value '{value}' is not a non-negative integer")
    return int(text)


def parse_duration(value: Any, name: str) -> float:
    text = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text)
    if not m:
        raise TproxyError(f"{name}: value '{value}' is not a duration (for example 2s or 500ms)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]


def parse_str_list(value: Any, name: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(str(i).strip() for i in items if str(i).strip())


def parse_ips(value: Any, name: str) -> tuple[str, ...]:
    """Addresses or CIDRs, comma lists allowed; kept in the form iptables-save prints (10.0.0.1/32)."""
    out = []
    for item in parse_str_list(value, name):
        for address in [a.strip() for a in item.split(",") if a.strip()]:
            try:
                out.append(str(ipaddress.ip_network(address, strict=False)))
            except ValueError:
                raise TproxyError(
                    f"{name}: invalid IP address: '{address}'. Expected format: <ip> or <ip>/<cidr> "
                    "(e.g., 10.0.0.1, 172.16.0.0/16, fe80::1, fe80::/10)") from None
    return tuple(out)


@dataclass(frozen=True)
class UidExclusion:
    """One `--exclude-outbound-ports-for-uids` entry for one protocol, in iptables' own spelling."""

    protocol: str
    ports: str  # multiport list: "53,3000:5000"
    uids: str   # owner range: "106-108"


def _check_value_or_range(text: str, name: str, what: str) -> None:
    for element in [e for e in text.split(",") if e]:
        for bound in element.split("-"):
            if not bound.isdigit() or int(bound) > 65535:
                raise TproxyError(f"{name}: invalid {what} '{text}'")


def parse_uid_exclusions(value: Any, name: str) -> tuple[UidExclusion, ...]:
    """Kuma's `<protocol:>?<ports:>?<uids>` (e.g. `53,3000-5000:106-108`, `udp:*:1000`)."""
    out = []
    for entry in parse_str_list(value, name):
        parts = entry.split(":")
        if len(parts) > 3:
            raise TproxyError(f"{name}: invalid format for excluding ports by UIDs: '{entry}'. "
                              "Expected format: <protocol:>?<ports:>?<uids>")
        protocol, ports, uids = (["*", "*"] + parts)[-3:]
        if uids == "*":
            raise TproxyError(f"{name}: wildcard '*' is not allowed for UIDs")
        if "," in uids:
            raise TproxyError(f"{name}: invalid UID entry: '{uids}'. It should either be a single item or a range")
        ports = "1-65535" if ports in ("", "*") else ports
        _check_value_or_range(ports, name, "port range")
        if not re.fullmatch(r"\d+(-\d+)?", uids):
            raise TproxyError(f"{name}: invalid UID range '{uids}'")
        protocols = ["tcp", "udp"] if protocol in ("", "*") else [p.strip().lower() for p in protocol.split(",")]
        for p in protocols:
            if p not in ("tcp", "udp"):
                raise TproxyError(f"{name}: invalid or unsupported protocol: '{p}'")
            out.append(UidExclusion(p, ports.replace("-", ":"), uids))
    return tuple(out)


def parse_vnets(value: Any, name: str) -> tuple[tuple[str, str], ...]:
    out = []
    for network in parse_str_list(value, name):
        iface, sep, cidr = network.partition(":")
        if not sep or not iface:
            raise TproxyError(f"{name}: invalid virtual network definition: {network}")
        try:
            out.append((iface, str(ipaddress.ip_network(cidr, strict=False))))
        except ValueError:
            raise TproxyError(f"{name}: invalid CIDR definition for {cidr}") from None
    return tuple(out)


def parse_executables(value: Any, name: str) -> dict[str, str]:
    if isinstance(value, str):
        pairs = [p.partition(":")[::2] for p in value.split(",") if p.strip()]
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict):
        raise TproxyError(f"{name}: expected name:path[,name:path...]")
    for key in value:
        if key not in EXECUTABLE_NAMES:
            raise TproxyError(f"{name}: unknown executable '{key}' (valid: {', '.join(EXECUTABLE_NAMES)})")
    for family in ("iptables", "ip6tables"):
        given = [n for n in (family, f"{family}-save", f"{family}-restore") if n in value]
        if given and len(given) != 3:
            raise TproxyError(f"{name}: {family}, {family}-save and {family}-restore must all be given together")
    return {k: str(v) for k, v in value.items()}


@dataclass(frozen=True)
class Flow:
    """Inbound or outbound redirection settings."""

    enabled: bool
    port: int
    include_ports: tuple[int, ...]
    exclude_ports: tuple[int, ...]
    exclude_ips: tuple[str, ...]
    insert: bool
    uid_exclusions: tuple[UidExclusion, ...] = ()
    redirect_ssh: bool = False


@dataclass(frozen=True)
class Settings:
    """Validated install settings (host facts such as the dp user's uid are resolved later)."""

    dp_user: str
    ip_family_mode: str
    inbound: Flow
    outbound: Flow
    dns_enabled: bool
    dns_port: int
    dns_capture_all: bool
    dns_conntrack_split: bool
    resolv_conf: str
    vnets: tuple[tuple[str, str], ...]
    log_enabled: bool
    log_level: int
    wait: int
    wait_interval: int
    max_retries: int
    sleep_between_retries: float
    executables: dict = field(hash=False)
    drop_invalid: bool
    store_firewalld: bool
    verbose: bool
    dry_run: bool


def _flow(v: dict, name: str) -> Flow:
    n = f"redirect.{name}"
    return Flow(
        enabled=parse_bool(v["enabled"], f"{n}.enabled"), port=parse_port(v["port"], f"{n}.port"),
        include_ports=parse_ports(v["includePorts"], f"{n}.includePorts"),
        exclude_ports=parse_ports(v["excludePorts"], f"{n}.excludePorts"),
        exclude_ips=parse_ips(v["excludePortsForIPs"], f"{n}.excludePortsForIPs"),
        insert=parse_bool(v["insertRedirectInsteadOfAppend"], f"{n}.insertRedirectInsteadOfAppend"),
        uid_exclusions=parse_uid_exclusions(v["excludePortsForUIDs"], f"{n}.excludePortsForUIDs"),
        redirect_ssh=parse_bool(v.get("redirectSSH", False), f"{n}.redirectSSH"),
    )


def validate(values: dict) -> Settings:
    """The merged values as frozen Settings; a bad value raises TproxyError naming its key."""
    mode = str(values["ipFamilyMode"] or "dualstack").lower()
    if mode not in ("dualstack", "ipv4"):
        raise TproxyError(f"ipFamilyMode: value '{values['ipFamilyMode']}' must be one of 'dualstack' or 'ipv4'")
    if parse_bool(values["comments"]["disabled"], "comments.disabled"):
        raise TproxyError("comments.disabled: meshway always comments its rules (uninstall finds them by their comments)")
    dns, retry = values["redirect"]["dns"], values["retry"]
    capture_all = parse_bool(dns["captureAll"], "redirect.dns.captureAll")
    return Settings(
        dp_user=str(values["kumaDPUser"] or "").strip(), ip_family_mode=mode,
        inbound=_flow(values["redirect"]["inbound"], "inbound"), outbound=_flow(values["redirect"]["outbound"], "outbound"),
        dns_enabled=parse_bool(dns["enabled"], "redirect.dns.enabled") or capture_all,
        dns_port=parse_port(dns["port"], "redirect.dns.port"), dns_capture_all=capture_all,
        dns_conntrack_split=not parse_bool(dns["skipConntrackZoneSplit"], "redirect.dns.skipConntrackZoneSplit"),
        resolv_conf=str(dns["resolvConfigPath"]),
        vnets=parse_vnets(values["redirect"]["vnet"]["networks"], "redirect.vnet.networks"),
        log_enabled=parse_bool(values["log"]["enabled"], "log.enabled"),
        log_level=parse_uint(values["log"]["level"], "log.level"),
        wait=parse_uint(values["wait"], "wait"), wait_interval=parse_uint(values["waitInterval"], "waitInterval"),
        max_retries=parse_uint(retry["maxRetries"], "retry.maxRetries"),
        sleep_between_retries=parse_duration(retry["sleepBetweenRetries"], "retry.sleepBetweenRetries"),
        executables=parse_executables(values["iptablesExecutables"], "iptablesExecutables"),
        drop_invalid=parse_bool(values["dropInvalidPackets"], "dropInvalidPackets"),
        store_firewalld=parse_bool(values["storeFirewalld"], "storeFirewalld"),
        verbose=parse_bool(values["verbose"], "verbose"), dry_run=parse_bool(values["dryRun"], "dryRun"),
    )


def settings_json(settings: Settings) -> str:
    """For --verbose: the settings as applied."""
    def plain(v):
        if isinstance(v, (Flow, UidExclusion)):
            return {k: plain(x) for k, x in v.__dict__.items()}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v
    return json.dumps({k: plain(v) for k, v in settings.__dict__.items()}, default=str, indent=2)

