"""KIC's `konghq.com/*` annotations and Ingress paths, read into route and service fields.

Route-level keys are read on the Ingress, service-level keys on the Kubernetes Service, as KIC's
`internal/annotations/annotations.go` does. A value that does not parse raises `Bad` naming the
annotation, so the translator can leave that one object out and say why.
"""
from __future__ import annotations

import re

PREFIX = "konghq.com/"
DEFAULT_REGEX_PREFIX = "/~"
PROTOCOLS = {"http", "https", "grpc", "grpcs", "tcp", "tls", "udp", "tls_passthrough", "ws", "wss"}
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
REDIRECT_CODES = {301, 302, 307, 308, 426}
PATH_HANDLING = {"v0", "v1"}
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


class Bad(Exception):
    """A field whose value cannot be translated."""

    def __init__(self, field_: str, reason: str):
        super().__init__(reason)
        self.field, self.reason = field_, reason


def _where(key: str) -> str:
    return f"metadata.annotations[{PREFIX}{key}]"


def _bool(value: str, key: str) -> bool:
    if value.strip().lower() not in ("true", "false"):
        raise Bad(_where(key), f"expected \"true\" or \"false\", got {value!r}")
    return value.strip().lower() == "true"


def _int(value: str, key: str, low: int, high: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise Bad(_where(key), f"expected an integer, got {value!r}") from None
    if not low <= number <= high:
        raise Bad(_where(key), f"must be between {low} and {high}, got {number}")
    return number


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def route_fields(annotations: dict) -> dict:
    """Route fields from an Ingress's annotations, over KIC's defaults."""
    out: dict = {"strip_path": False, "preserve_host": True, "regex_priority": 0,
                 "request_buffering": True, "response_buffering": True}
    get = {k[len(PREFIX):]: v for k, v in annotations.items() if k.startswith(PREFIX)}.get
    for key in ("strip-path", "preserve-host", "request-buffering", "response-buffering"):
        if get(key) is not None:
            out[key.replace("-", "_")] = _bool(get(key), key)
    if get("regex-priority") is not None:
        out["regex_priority"] = _int(get("regex-priority"), "regex-priority", -(2**31), 2**31 - 1)
    if get("https-redirect-status-code") is not None:
        code = _int(get("https-redirect-status-code"), "https-redirect-status-code", 100, 599)
        if code not in REDIRECT_CODES:
            raise Bad(_where("https-redirect-status-code"), f"must be one of {sorted(REDIRECT_CODES)}")
        out["https_redirect_status_code"] = code
    if get("methods") is not None:
        methods = [m.upper() for m in _list(get("methods"))]
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise Bad(_where("methods"), f"unknown method(s) {', '.join(unknown)}")
        out["methods"] = methods
    if get("protocols") is not None:
        protocols = [p.lower() for p in _list(get("protocols"))]
        unknown = [p for p in protocols if p not in PROTOCOLS]
        if unknown or not protocols:
            raise Bad(_where("protocols"), f"unknown protocol(s) {', '.join(unknown) or '(none given)'}")
        out["protocols"] = protocols
    if get("path-handling") is not None:
        if get("path-handling").strip() not in PATH_HANDLING:
            raise Bad(_where("path-handling"), f"must be v0 or v1, got {get('path-handling')!r}")
        out["path_handling"] = get("path-handling").strip()
    if get("snis") is not None:
        out["snis"] = _hosts(get("snis"), "snis")
    headers = _headers(annotations)
    if headers:
        out["headers"] = headers
    return out


def host_aliases(annotations: dict) -> list[str]:
    """`konghq.com/host-aliases`: more hosts for the routes of the object, after their own."""
    value = annotations.get(PREFIX + "host-aliases")
    return _hosts(value, "host-aliases") if value is not None else []


def _hosts(value: str, key: str) -> list[str]:
    hosts = [h.lower() for h in _list(value)]
    bad = [h for h in hosts if not _HOST.match(h)]
    if bad or not hosts:
        raise Bad(_where(key), f"invalid host name(s) {', '.join(bad) or '(none given)'}")
    return hosts


def _headers(annotations: dict) -> dict[str, list[str]]:
    """KIC's `konghq.com/headers.<name>: a,b` (split on `konghq.com/headers-separator`, default `,`):
    the routes match those header values; they replace the route's own header matches."""
    separator = annotations.get(PREFIX + "headers-separator") or ","
    out = {}
    for key, value in sorted(annotations.items()):
        name = key.removeprefix(PREFIX + "headers.") if key.startswith(PREFIX + "headers.") else ""
        if name and value:
            out[name] = [v.strip() for v in value.split(separator)]
    return out


def service_fields(annotations: dict) -> dict:
    """Service fields from a Kubernetes Service's annotations (`host_header` is the upstream's)."""
    out: dict = {}
    get = {k[len(PREFIX):]: v for k, v in annotations.items() if k.startswith(PREFIX)}.get
    for key in ("connect-timeout", "read-timeout", "write-timeout"):
        if get(key) is not None:
            out[key.replace("-", "_")] = _int(get(key), key, 1, 2**31 - 1)
    if get("retries") is not None:
        out["retries"] = _int(get("retries"), "retries", 0, 32767)
    if get("protocol") is not None:
        protocol = get("protocol").strip().lower()
        if protocol not in PROTOCOLS:
            raise Bad(_where("protocol"), f"unknown protocol {protocol!r}")
        out["protocol"] = protocol
    if get("path") is not None:
        if not get("path").startswith("/"):
            raise Bad(_where("path"), f"must start with /, got {get('path')!r}")
        out["path"] = get("path")
    if get("host-header"):
        out["host_header"] = get("host-header").strip()
    if get("tls-verify") is not None:
        out["tls_verify"] = _bool(get("tls-verify"), "tls-verify")
    if get("tls-verify-depth") is not None:
        out["tls_verify_depth"] = _int(get("tls-verify-depth"), "tls-verify-depth", 0, 64)
    return out


def kong_paths(path: str, path_type: str, where: str, regex_prefix: str = DEFAULT_REGEX_PREFIX) -> list[str]:
    """KIC's PathsFromIngressPaths: Prefix /foo -> /foo/ and ~/foo$, Exact -> ~/foo$, else as given."""
    if path and not path.startswith("/"):
        raise Bad(where + ".path", f"must start with /, got {path!r}")
    if path_type == "Exact":
        return [f"~{path or '/'}$"]
    if path_type == "Prefix":
        base = path.rstrip("/")
        return ["/"] if not base else [f"{base}/", f"~{base}$"]
    if path_type == "ImplementationSpecific":
        if path.startswith(regex_prefix):  # KIC's /~ marks a regex path: Kong's ~ prefix
            return ["~" + path[len(regex_prefix):]]
        return [path or "/"]
    raise Bad(where + ".pathType", f"unknown pathType {path_type!r}")
