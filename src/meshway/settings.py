"""Node settings: built-in defaults, overridden by `meshway.conf`, overridden by `MESHWAY_<KEY>`.

Rules:
- Key names follow Kong's where the concept is the same; a few Kong/nginx spellings used in
  Kong's own walkthroughs are accepted as aliases (`nginx_proxy_proxy_bind` is `proxy_bind`).
- An unknown key or a value that does not parse stops start-up with a `SettingsError`
  naming the key and the value; nothing is guessed.
- Listen specs use Kong's syntax: `127.0.0.3:8000 transparent, [::1]:8443 ssl http2`, or `off`.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

ENV_PREFIX = "MESHWAY_"
# `MESHWAY_<FAMILY>_*` variables that belong to other meshway tools, not to node settings: the tool
# that reads a family validates it, `load_settings` leaves it alone (an unknown MESHWAY_<KEY> outside
# these still stops start-up). A tool with its own variables adds its family here and reads it from here.
TPROXY_ENV_PREFIX = "MESHWAY_TRANSPARENT_PROXY_"  # `meshway install transparent-proxy` (Kuma's KUMA_TRANSPARENT_PROXY_*)
TOOL_ENV_PREFIXES = (TPROXY_ENV_PREFIX,)
LISTEN_FLAGS = frozenset({"ssl", "http2", "transparent", "proxy_protocol", "reuseport", "backlog", "bind", "udp"})
ROLES = ("traditional", "control_plane", "data_plane")
DATABASES = ("sqlite", "postgres", "off")
LOG_LEVELS = ("debug", "info", "notice", "warn", "error", "crit")


class SettingsError(ValueError):
    """A setting is unknown or its value is malformed; the message names both."""


@dataclasses.dataclass(frozen=True)
class ListenSpec:
    """One address a listener binds, with Kong's flags."""

    host: str
    port: int
    ssl: bool = False
    http2: bool = False
    transparent: bool = False
    proxy_protocol: bool = False
    reuseport: bool = False
    backlog: int = 16384
    udp: bool = False  # a stream_listen datagram listener (Kong's `udp` flag)

    @property
    def family_host(self) -> str:
        return self.host.strip("[]")

    def __str__(self) -> str:
        host = f"[{self.family_host}]" if ":" in self.family_host else self.host
        flags = [f for f in ("ssl", "http2", "transparent", "proxy_protocol", "reuseport", "udp") if getattr(self, f)]
        return " ".join([f"{host}:{self.port}", *flags])


_ADDR = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\s\[\]]+)):(?P<port>\d+)$")


def parse_listen(key: str, value: str) -> tuple[ListenSpec, ...]:
    """Parse a Kong listen spec; `off` gives no listeners."""
    value = value.strip()
    if value in ("off", ""):
        return ()
    specs = []
    for part in value.split(","):
        words = part.split()
        if not words:
            raise SettingsError(f"{key}: empty entry in listen spec {value!r}")
        m = _ADDR.match(words[0])
        if not m:
            raise SettingsError(f"{key}: invalid address {words[0]!r} in {value!r} (expected host:port or [ipv6]:port)")
        port = int(m["port"])
        if not 0 <= port <= 65535:
            raise SettingsError(f"{key}: port {port} out of range in {value!r}")
        flags: dict[str, Any] = {}
        for word in words[1:]:
            name, _, arg = word.partition("=")
            if name not in LISTEN_FLAGS:
                raise SettingsError(f"{key}: unknown flag {word!r} in {value!r}")
            if name == "backlog":
                if not arg.isdigit():
                    raise SettingsError(f"{key}: invalid backlog {word!r} in {value!r}")
                flags["backlog"] = int(arg)
            elif name != "bind":
                flags[name] = True
        if flags.get("udp"):  # Kong: udp on stream_listen only, and not with ssl or proxy_protocol
            if key != "stream_listen":
                raise SettingsError(f"{key}: the udp flag is only valid on stream_listen (in {value!r})")
            both = [f for f in ("ssl", "proxy_protocol", "http2", "transparent") if flags.get(f)]
            if both:
                raise SettingsError(f"{key}: udp cannot be combined with {both[0]} (in {value!r})")
        host = m["v6"] if m["v6"] else m["host"]
        specs.append(ListenSpec(host=host, port=port, **flags))
    return tuple(specs)


def _choice(options: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(key: str, value: str) -> str:
        if value not in options:
            raise SettingsError(f"{key}: invalid value {value!r} (expected one of {', '.join(options)})")
        return value

    return parse


def _text(key: str, value: str) -> str:
    return value


def _wan_addresses(key: str, value: str) -> tuple[str, ...]:
    """Consul's `retry_join_wan`: peers' addresses, `a, b` or Consul's JSON list `["a", "b"]`."""
    items = _list(key, value.strip().strip("[]").replace('"', "").replace("'", ""))
    for item in items:
        if not re.fullmatch(r"(https?://)?[A-Za-z0-9.\[\]:_-]+(:\d+)?/?", item):
            raise SettingsError(f"{key}: invalid address {item!r} (expected host, host:port or a URL)")
    return items


def _optional_datacenter(key: str, value: str) -> str:
    return _datacenter(key, value) if value.strip() else ""


def _datacenter(key: str, value: str) -> str:
    """Consul's `datacenter`: lower-cased; it is a DNS label of the SNI names gateways route by."""
    name = value.strip().lower()
    if not name:
        raise SettingsError(f"{key}: cannot be empty")
    if not re.fullmatch(r"[a-z0-9_-]{1,63}", name):
        raise SettingsError(f"{key}: invalid value {value!r} (letters, digits, '-' and '_', at most 63)")
    return name


def _bool(key: str, value: str) -> bool:
    low = value.lower()
    if low in ("on", "true", "yes", "1"):
        return True
    if low in ("off", "false", "no", "0"):
        return False
    raise SettingsError(f"{key}: invalid boolean {value!r} (expected on or off)")


def _int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{key}: invalid integer {value!r}") from None


def _port(key: str, value: str) -> int:
    port = _int(key, value)
    if not 0 < port <= 65535:
        raise SettingsError(f"{key}: port {value!r} out of range (1-65535)")
    return port


def _number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{key}: invalid number {value!r}") from None


def _duration(key: str, value: str) -> float:
    """Seconds, as a number or a Go duration (Kuma's settings: `72h`, `1h30m`, `2s`); 0 turns it off."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        if seconds < 0:
            raise SettingsError(f"{key}: {value!r} is negative (0 turns it off)")
        return seconds
    from meshway.goduration import parse_duration

    try:
        return parse_duration(value)
    except ValueError as e:
        raise SettingsError(f"{key}: {e}") from None


def _workers(key: str, value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    n = _int(key, value)
    if n < 1:
        raise SettingsError(f"{key}: invalid value {value!r} (expected auto or a positive integer)")
    return n


def _list(key: str, value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _hostport(key: str, value: str) -> str:
    if value and not re.match(r"^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d+$", value):
        raise SettingsError(f"{key}: invalid value {value!r} (expected host:port)")
    return value


def _origins(key: str, value: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in _list(key, value):
        src, sep, dst = item.partition("=")
        pat = r"^[a-z]+://[^/\s]+:\d+$"
        if not sep or not re.match(pat, src) or not re.match(pat, dst):
            raise SettingsError(f"{key}: invalid origin {item!r} (expected scheme://host:port=scheme://host:port)")
        pairs.append((src, dst))
    return tuple(pairs)


def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]` as a browser sends it in `Origin` (lower case, no default port), or None."""
    m = re.match(r"^(https?)://(\[[0-9a-fA-F:.]+\]|[^/:\s?#\[\]@]+)(?::(\d{1,5}))?(?:[/?#]\S*)?$", value.strip(), re.I)
    if not m:
        return None
    scheme, host, port = m[1].lower(), m[2].lower(), m[3]
    if port and int(port) > 65535:
        return None
    if port and int(port) != {"http": 80, "https": 443}[scheme]:
        return f"{scheme}://{host}:{int(port)}"
    return f"{scheme}://{host}"


def _gui_origins(key: str, value: str) -> tuple[str, ...]:
    """Kong's `admin_gui_url`: dashboard URLs, kept as the origins a browser sends (path dropped)."""
    origins = []
    for item in _list(key, value):
        origin = normalize_origin(item)
        if origin is None:
            raise SettingsError(f"{key}: invalid origin {item!r} (expected http(s)://host[:port]; '*' and 'null' are not allowed)")
        origins.append(origin)
    return tuple(origins)


def _gui_path(key: str, value: str) -> str:
    """Kong's `admin_gui_path`: `/` or `/name[/name...]`, without a trailing slash."""
    if value == "/" or re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
        return value
    raise SettingsError(f"{key}: invalid path {value!r} (expected '/' or a path such as /manager, "
                        "letters, digits, '.', '_', '~', '-', without a trailing slash)")


def _server_names(key: str, value: str) -> tuple[str, ...]:
    names = tuple(v.lower().rstrip(".") for v in _list(key, value))
    for name in names:
        if not re.match(r"^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)$", name):
            raise SettingsError(f"{key}: invalid name {name!r} (expected a host name or address, without a port)")
    return names


DNS_RECORD_TYPES = ("LAST", "SRV", "A", "AAAA", "CNAME")


def _dns_resolver(key: str, value: str) -> tuple[tuple[str, int], ...]:
    """Kong's `dns_resolver`: `ip[:port]` items (IPv6 as `[ip]:port`), port 53 by default."""
    servers = []
    for item in _list(key, value):
        m = re.match(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<ip>[^:]+))(?::(?P<port>\d+))?$", item)
        host = m and (m["v6"] or m["ip"])
        try:
            ipaddress.ip_address(host or "")
        except ValueError:
            raise SettingsError(f"{key}: invalid server {item!r} (expected ip[:port])") from None
        port = int(m["port"] or 53)
        if not 0 < port <= 65535:
            raise SettingsError(f"{key}: port {port} out of range in {item!r}")
        servers.append((host, port))
    return tuple(servers)


def _dns_order(key: str, value: str) -> tuple[str, ...]:
    """Kong's `dns_order`: record types to try in turn, LAST = the type that last worked."""
    order = tuple(v.upper() for v in _list(key, value))
    wrong = [v for v in order if v not in DNS_RECORD_TYPES]
    if not order or wrong:
        raise SettingsError(f"{key}: invalid value {value!r} (expected a list of {', '.join(DNS_RECORD_TYPES)})")
    return order


# key: (default, parser). Defaults are strings so they go through the same parser as user values.
SCHEMA: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "prefix": ("/usr/local/meshway", _text),
    "role": ("traditional", _choice(ROLES)),
    "datacenter": ("dc1", _datacenter),  # the zone's name (Consul's setting and default)
    # WAN federation, Consul's names (see meshway.zones._federation): the primary zone's name
    # (empty: this one), the other zones' control planes, and this one's address for them
    "primary_datacenter": ("", _optional_datacenter),
    "retry_join_wan": ("", _wan_addresses),
    "advertise_addr_wan": ("", _text),
    "retry_interval_wan": ("5", _number),  # seconds between federation exchanges (Consul: 30s joins)
    # sent as Kong-Admin-Token to the other zones' control planes (exchanges, forwarded writes),
    # for an Admin API with admin_auth = token: Consul's token for replication
    "acl_replication_token": ("", _text),
    "database": ("sqlite", _choice(DATABASES)),
    "sqlite_path": ("", _text),
    "pg_host": ("127.0.0.1", _text),
    "pg_port": ("5432", _port),
    "pg_user": ("meshway", _text),
    "pg_password": ("", _text),
    "pg_database": ("meshway", _text),
    "pg_timeout": ("5000", _int),
    "db_update_frequency": ("0.5", _number),
    # strict: an Admin API write answers once every worker of this node proxies with it (Kong's default)
    "worker_consistency": ("strict", _choice(("strict", "eventual"))),
    "declarative_config": ("", _text),
    "proxy_listen": ("0.0.0.0:8000 reuseport, 0.0.0.0:8443 http2 ssl reuseport", parse_listen),
    "stream_listen": ("off", parse_listen),
    "admin_listen": ("127.0.0.1:8001, 127.0.0.1:8444 ssl", parse_listen),
    # off as in Kong: several nodes on one host (a control plane and its data planes, sidecars)
    # must not all claim the same status port; enable it where /status or /metrics is scraped
    "status_listen": ("off", parse_listen),
    "cluster_listen": ("0.0.0.0:8005", parse_listen),
    "mesh_dp_listen": ("0.0.0.0:5678", parse_listen),  # `meshway dp run` data planes (Kuma's DP server port)
    "cluster_control_plane": ("", _hostport),
    "cluster_cert": ("", _text),
    "cluster_cert_key": ("", _text),
    "cluster_ca_cert": ("", _text),
    "cluster_mtls": ("shared", _choice(("shared", "pki"))),
    "cluster_server_name": ("", _text),
    "cluster_dp_labels": ("", _list),
    "cluster_data_plane_heartbeat": ("30", _number),
    "lua_ssl_trusted_certificate": ("", _text),
    "ssl_cert": ("", _text),
    "ssl_cert_key": ("", _text),
    "admin_ssl_cert": ("", _text),
    "admin_ssl_cert_key": ("", _text),
    # Admin API security (README "Security"): who may reach it, from which pages, with what.
    "admin_auth": ("off", _choice(("off", "token"))),  # token: Kong-Admin-Token on every request
    "admin_ssl_client_ca": ("", _text),  # PEM CA file: ssl admin listeners require a client certificate it signed
    "admin_gui_origin": ("", _gui_origins),  # dashboard origins that browsers may drive the Admin API from
    "admin_server_names": ("", _server_names),  # Host names accepted besides localhost and the bound addresses
    "admin_listen_insecure": ("off", _bool),  # on: allow a non-loopback admin_listen without authentication
    # The dashboard (meshway.ui), Kong Manager's keys: same loopback default and authentication as the Admin API.
    "admin_gui_listen": ("127.0.0.1:8002", parse_listen),
    "admin_gui_path": ("/", _gui_path),
    "log_level": ("notice", _choice(LOG_LEVELS)),
    "proxy_access_log": ("logs/access.log", _text),
    "proxy_error_log": ("logs/error.log", _text),
    "admin_access_log": ("logs/admin_access.log", _text),
    "admin_error_log": ("logs/error.log", _text),
    "proxy_bind": ("", _text),
    "workers": ("auto", _workers),
    "origins": ("", _origins),
    "mesh_mtls": ("permissive", _choice(("permissive", "strict", "off"))),
    "mesh_inbound": ("", _list),  # what this sidecar fronts (ip, ip:port, CIDR); default: origins' left sides
    # A `dp run` Dataplane offline this long is deleted (KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE); 0: never
    "mesh_dataplane_cleanup_age": ("72h", _duration),
    "plugins": ("bundled", _list),
    "headers": ("server_tokens, latency_tokens", _list),
    "trusted_ips": ("", _list),
    "real_ip_header": ("X-Real-IP", _text),
    "client_max_body_size": ("0", _int),
    "client_header_timeout": ("60", _number),
    "client_body_timeout": ("60", _number),
    "keepalive_timeout": ("75", _number),
    "large_client_header_buffers": ("8192", _int),
    # Limits against hostile clients (README "Security / Limits"): Envoy's and nginx's defaults.
    "max_request_headers": ("100", _int),
    "http2_max_requests": ("1000", _int),
    "http2_max_control_frames": ("1000", _int),
    "http2_max_empty_frames": ("1", _int),
    "http2_max_window_updates_per_data_frame": ("10", _int),
    # compiled: the HTTP/1.1 parser in C (Cython over llhttp); python: httptools' callbacks; auto: compiled if built
    "http1_impl": ("auto", _choice(("auto", "compiled", "python"))),
    # compiled: HTTP/2 framing, HPACK encoding and request-head checks in C; python: the reference; auto: compiled if built
    "http2_impl": ("auto", _choice(("auto", "compiled", "python"))),
    # compiled: TLS listeners' records by OpenSSL on the socket, from C; python: uvloop's ssl transport; auto: compiled if built
    "tls_impl": ("auto", _choice(("auto", "compiled", "python"))),
    "underscores_in_headers": ("off", _bool),  # on: forward request headers with `_` in their names (nginx)
    "upstream_keepalive_pool_size": ("512", _int),
    "upstream_keepalive_max_requests": ("10000", _int),
    "upstream_keepalive_idle_timeout": ("60", _number),
    "stream_preread_timeout": ("0.3", _number),
    "start_timeout": ("30", _number),
    "dns_resolver": ("", _dns_resolver),  # empty: /etc/resolv.conf's nameservers
    "dns_order": ("LAST,SRV,A,CNAME", _dns_order),
    "dns_hostsfile": ("/etc/hosts", _text),  # names answered before any DNS server is asked
}

ALIASES = {
    "nginx_proxy_proxy_bind": "proxy_bind",
    "nginx_stream_proxy_bind": "proxy_bind",
    "nginx_worker_processes": "workers",
    "nginx_proxy_underscores_in_headers": "underscores_in_headers",  # Kong's injected-directive spelling
    "nginx_http_underscores_in_headers": "underscores_in_headers",
    "pg_ssl_cert": "cluster_cert",
    "router_consistency": "worker_consistency",  # Kong 2.x's name
    "admin_gui_url": "admin_gui_origin",
}

REDACTED = frozenset({"pg_password", "cluster_cert_key", "ssl_cert_key", "admin_ssl_cert_key", "acl_replication_token"})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Parsed node settings: `values` holds every key of SCHEMA, parsed."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]
    raw: Mapping[str, str] = dataclasses.field(default_factory=dict)  # each value as given, unparsed

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def prefix_path(self) -> Path:
        return Path(self.values["prefix"]).absolute()

    def path(self, value: str) -> Path:
        """A path setting relative to the prefix."""
        p = Path(value)
        return p if p.is_absolute() else self.prefix_path / p

    def redacted(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.values.items():
            if key in REDACTED and value:
                out[key] = "******"
            elif isinstance(value, tuple) and value and isinstance(value[0], ListenSpec):
                out[key] = [str(v) for v in value]
            else:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out


def _canonical(key: str) -> str:
    key = key.strip().lower()
    return ALIASES.get(key, key)


def read_conf_file(path: str | os.PathLike) -> dict[str, str]:
    """Read `key = value` lines; `#` starts a comment, `\\#` is a `#` in a value (as in kong.conf)."""
    out: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise SettingsError(f"cannot read configuration file {path}: {e.strerror}") from None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.split(raw, 1)[0].replace("\\#", "#").strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SettingsError(f"{path}:{lineno}: expected 'key = value', got {raw.strip()!r}")
        out[key.strip()] = value.strip()
    return out


_COMMENT = re.compile(r"(?<!\\)#")


def load_settings(
    conf: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    recorded: str | os.PathLike | None = None,
) -> Settings:
    """Defaults < recorded settings (restart) < conf file < MESHWAY_* environment < explicit
    overrides (command-line flags)."""
    env = os.environ if env is None else env
    raw: dict[str, tuple[str, str]] = {k: (d, "default") for k, (d, _) in SCHEMA.items()}
    layers: list[tuple[str, Mapping[str, str]]] = []
    if recorded:
        layers.append((str(recorded), read_conf_file(recorded)))
    if conf:
        layers.append((str(conf), read_conf_file(conf)))
    layers.append(("environment", settings_env(env)))
    if overrides:
        layers.append(("command line", overrides))
    for source, layer in layers:
        for key, value in layer.items():
            name = _canonical(key)
            if name not in SCHEMA:
                shown = ENV_PREFIX + key.upper() if source == "environment" else key
                raise SettingsError(f"unknown setting {shown!r} (from {source}) = {value!r}")
            raw[name] = (value, source)
    values = {}
    for key, (value, source) in raw.items():
        try:
            values[key] = SCHEMA[key][1](key, value.strip())
        except SettingsError as e:
            raise SettingsError(f"{e} (from {source})") from None
    if not values["sqlite_path"]:
        values["sqlite_path"] = str(Path(values["prefix"]).absolute() / "meshway.db")
    return Settings(values=values, sources={k: s for k, (_, s) in raw.items()},
                    raw={k: v.strip() for k, (v, _) in raw.items()})


def settings_env(env: Mapping[str, str]) -> dict[str, str]:
    """The MESHWAY_<KEY> variables of `env` that are node settings (or typos of them), by <KEY>."""
    return {k[len(ENV_PREFIX):]: v for k, v in env.items()
            if k.startswith(ENV_PREFIX) and not k.startswith(TOOL_ENV_PREFIXES)}


def without_settings_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the MESHWAY_<KEY> variables of settings: for the node's own processes, which
    read the settings the CLI recorded in the prefix and nothing else."""
    return {k: v for k, v in env.items()
            if not (k.startswith(ENV_PREFIX) and _canonical(k[len(ENV_PREFIX):]) in SCHEMA)}


def _explicit(settings: Settings, key: str) -> bool:
    return settings.sources.get(key, "default") != "default"


def check_role(settings: Settings) -> None:
    """Refuse settings that make no sense for the node's role, naming the key."""
    role, v = settings.role, settings.values
    problems: list[str] = []
    if role == "data_plane":
        if v["database"] != "off":
            problems.append(f"role = data_plane requires database = off (got database = {v['database']})")
        if not v["cluster_control_plane"]:
            problems.append("role = data_plane requires cluster_control_plane (host:port of the control plane)")
        for key in ("admin_listen", "admin_gui_listen", "declarative_config"):
            if _explicit(settings, key) and v[key]:
                problems.append(f"{key} cannot be used with role = data_plane (its config comes from the control plane)")
    elif role == "control_plane":
        if v["database"] == "off":
            problems.append("role = control_plane requires a database (database = sqlite or postgres)")
        for key in ("proxy_listen", "stream_listen", "cluster_control_plane"):
            if _explicit(settings, key) and v[key]:
                problems.append(f"{key} cannot be used with role = control_plane (a control plane proxies nothing)")
    elif v["cluster_control_plane"]:
        problems.append("cluster_control_plane can only be used with role = data_plane")
    # A control plane without the cluster certificate serves `meshway dp run` data planes only
    # (they authenticate with dataplane tokens); its hybrid cluster listener is then off.
    needs_cert = role == "data_plane" or (role == "control_plane" and (v["cluster_cert"] or v["cluster_cert_key"]
                                                                       or (_explicit(settings, "cluster_listen") and v["cluster_listen"])))
    if needs_cert:
        for key in ("cluster_cert", "cluster_cert_key"):
            if not v[key]:
                problems.append(f"{key} must be set with role = {role} (see 'meshway hybrid gen-cert')")
    if v["declarative_config"] and v["database"] != "off":
        problems.append("declarative_config can only be used with database = off")
    problems += admin_problems(settings)
    if problems:
        raise SettingsError("; ".join(problems))


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback address; a wildcard or any other address or name is not."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def admin_listener_authenticated(settings: Settings, spec: ListenSpec) -> bool:
    """Whether every request on this admin listener must carry credentials (token or client certificate)."""
    return settings.admin_auth == "token" or (spec.ssl and bool(settings.admin_ssl_client_ca))


def admin_problems(settings: Settings) -> list[str]:
    """An Admin API reachable from the network without authentication is refused unless asked for."""
    problems = []
    if settings.admin_auth == "token" and settings.database == "off" and effective_listeners(settings, "admin_listen"):
        problems.append("admin_auth = token needs a database to keep the tokens in (database = off is set); "
                        "use admin_ssl_client_ca, or keep admin_listen on loopback")
    for key in ("admin_listen", "admin_gui_listen"):
        exposed = [str(spec) for spec in effective_listeners(settings, key)
                   if not is_loopback_host(spec.host) and not admin_listener_authenticated(settings, spec)]
        if exposed and not settings.admin_listen_insecure:
            what = "the Admin API" if key == "admin_listen" else "the dashboard (it drives the Admin API)"
            problems.append(
                f"{key} {', '.join(exposed)} is not a loopback address and {what} has no authentication: "
                "set admin_auth = token (tokens from 'meshway admin token create'), or admin_ssl_client_ca on an ssl "
                "listener, or bind it to 127.0.0.1; admin_listen_insecure = on allows it anyway")
    return problems


def effective_listeners(settings: Settings, key: str) -> tuple[ListenSpec, ...]:
    """A role ignores the listeners it does not use when they are only defaults."""
    role = settings.role
    unused = {
        "data_plane": {"admin_listen", "admin_gui_listen", "cluster_listen", "mesh_dp_listen"},
        "control_plane": {"proxy_listen", "stream_listen"},
        "traditional": {"cluster_listen"},
    }[role]
    if key == "mesh_dp_listen" and role == "traditional" and not _explicit(settings, key):
        return ()  # a gateway serves mesh data planes only when asked to
    if key == "admin_gui_listen" and not _explicit(settings, key) and not effective_listeners(settings, "admin_listen"):
        return ()  # the dashboard drives the Admin API: a node without one (a sidecar) serves none unless asked
    if key == "cluster_listen" and role == "control_plane" and not settings.values["cluster_cert"]:
        return ()  # no cluster certificate: `meshway dp run` data planes only
    return () if key in unused else settings.values[key]
