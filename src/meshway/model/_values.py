"""Checks on single values (hosts, paths, SNIs, CIDRs, PEMs): each returns an error message or None.

Messages follow Kong's typedefs so that scripts and docs written for Kong read the same here.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_METHOD = re.compile(r"^[A-Z]+$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def _hostname_ok(name: str) -> bool:
    if len(name) > 253 or not name:
        return False
    return all(_LABEL.match(label) for label in name.rstrip(".").split("."))


def check_host(value: str) -> str | None:
    """A service/upstream host: a hostname or an IP, no port."""
    if is_ip(value) or _hostname_ok(value):
        return None
    return f"invalid value: {value}"


def check_upstream_name(value: str) -> str | None:
    if is_ip(value) or not _hostname_ok(value):
        return "Invalid name ('" + value + "'); must be a valid hostname"
    return None


def _split_port(value: str) -> tuple[str, str | None]:
    if value.startswith("["):
        host, _, rest = value.partition("]")
        return host + "]", rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, port
    return value, None


def check_wildcard_host(value: str) -> str | None:
    """A route host: hostname, IP, optional port, one `*` as the leftmost or rightmost label."""
    host, port = _split_port(value)
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        return f"invalid port number: {port}"
    if host.count("*") > 1:
        return "invalid wildcard: must have at most one wildcard"
    if "*" in host:
        if not (host.startswith("*.") or host.endswith(".*")):
            return "invalid wildcard: must be placed at leftmost or rightmost label"
        host = host.replace("*", "wildcard")
    return check_host(host)


def check_sni(value: str) -> str | None:
    if is_ip(value):
        return "must not be an IP"
    if ":" in value:
        return "must not have a port"
    if value.count("*") > 1 or ("*" in value and not (value.startswith("*.") or value.endswith(".*"))):
        return "invalid wildcard: must be placed at leftmost or rightmost label"
    return None if _hostname_ok(value.replace("*", "wildcard")) else f"invalid value: {value}"


def check_path(value: str) -> str | None:
    """A service path: absolute, no whitespace."""
    if not value.startswith("/"):
        return "should start with: /"
    if re.search(r"\s", value):
        return "invalid path: '" + value + "' (characters outside of the reserved list of RFC 3986 found)"
    return None


_PCRE_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def pcre_to_python(pattern: str) -> str:
    """Kong's regex paths are PCRE: `(?<name>...)` is Python's `(?P<name>...)`."""
    return _PCRE_NAMED_GROUP.sub("(?P<", pattern)


def check_route_path(value: str) -> str | None:
    """A route path: `/prefix` or `~regex` (the regex must compile)."""
    if value.startswith("~"):
        try:
            re.compile(pcre_to_python(value[1:]))
        except re.error as e:
            return f"invalid regex: '{value[1:]}' ({e})"
        return None
    if not value.startswith("/"):
        return "should start with: / (fixed path) or ~/ (regex path)"
    if "//" in value:
        return "must not have empty segments"
    return None


def check_header_value(value: str) -> str | None:
    """A route header value: plain, or `~*regex` (case-insensitive; the regex must compile)."""
    if value.startswith("~*"):
        try:
            re.compile(value[2:], re.I)
        except re.error as e:
            return f"invalid regex: '{value[2:]}' ({e})"
    return None


def check_method(value: str) -> str | None:
    return None if _METHOD.match(value) else f"invalid value: {value}"


def check_header_name(value: str) -> str | None:
    if value.lower() == "host":
        return "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
    return None if _HEADER.match(value) else f"invalid value: {value}"


def check_cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"invalid ip or cidr range: '{value}'"
    return None


def check_tag(value: str) -> str | None:
    if "," in value or "/" in value:
        return "invalid tag '" + value + "': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
    return None


def check_target(value: str) -> str | None:
    host, port = _split_port(value)
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        return f"invalid port number: {port}"
    return check_host(host)


def normalize_target(value: str) -> str:
    """`host` -> `host:8000`, Kong's default target port."""
    _, port = _split_port(value)
    return value if port is not None else f"{value}:8000"


def load_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def load_key(pem: str) -> Any:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def check_redirect_uri(value: str) -> str | None:
    """Kong's oauth2 redirect_uris: a scheme and a host, no fragment."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or not parts.scheme or not parts.hostname:
        return f"cannot parse '{value}'"
    if "#" in value:
        return f"fragment not allowed in '{value}'"
    return None


def check_cert(pem: str) -> str | None:
    try:
        load_cert(pem)
    except ValueError as e:
        return f"invalid certificate: {_short(e)}"
    return None


def check_key(pem: str) -> str | None:
    try:
        load_key(pem)
    except (ValueError, TypeError) as e:
        return f"invalid key: {_short(e)}"
    return None


def _short(err: Exception) -> str:
    return str(err).split("\n")[0] or type(err).__name__


def _public_bytes(obj: Any) -> bytes:
    return obj.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_matches_key(cert_pem: str, key_pem: str) -> bool:
    return _public_bytes(load_cert(cert_pem).public_key()) == _public_bytes(load_key(key_pem).public_key())


def cert_is_ca(cert_pem: str) -> bool:
    try:
        bc = load_cert(cert_pem).extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return bool(bc.value.ca)


def cert_digest(cert_pem: str) -> str:
    return hashlib.sha256(load_cert(cert_pem).public_bytes(serialization.Encoding.DER)).hexdigest()
