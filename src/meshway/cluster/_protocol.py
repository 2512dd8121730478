"""The hybrid-mode wire protocol between a control plane (CP) and its data planes (DP).

Theory of operation:
- Transport: one websocket per data plane at `wss://<cluster_listen>/v1/outlet`, over mutual TLS
  (see `_tls.py` for who is accepted). The DP always connects; the CP never dials out.
- Control messages are JSON objects in text frames, with a `type` and the fields in MESSAGES;
  anything else is a protocol error and closes that one connection.
- A configuration travels in a binary frame: zlib(JSON {"type": "reconfigure", "config_hash",
  "config_table"}). The CP compresses each snapshot once and sends the same bytes to every DP.
- Order: DP sends `hello` first (node id, hostname, version, labels, its current hash). The CP
  either answers `error` (e.g. `version_incompatible`) and closes, or pushes the current config
  unless the DP already has that hash. The DP sends `ping` every heartbeat with its hash, and
  `applied` / `rejected` for each config it was given. A DP never applies an unchanged hash.
- Compatibility: same major.minor as the CP. The patch level may differ.
- Mesh (optional fields and messages; an older peer simply never sends them): `hello` may
  carry `mesh_inbound` (what this sidecar fronts, see `meshway.mesh`); the CP then adds every
  connected sidecar's entries to the pushed snapshot (`mesh` section, derived hash). A DP sends
  `csr` (PEM) after hello and again at 2/3 of its certificate's lifetime; the CP answers
  `certificate` (node certificate and mesh CA, PEM) or `error` with reason `csr_refused`.
- Incremental (optional): a DP whose hello says `delta: true` may get `reconfigure_delta` binary
  frames (what changed since its version, see `_delta.py`) and answers one it cannot apply with
  `resync`; the CP then sends the whole config. Other DPs only ever get `reconfigure`.
- Traffic (optional): a `ping` may carry `traffic`, the data plane's request counters (`_traffic`);
  a control plane that does not know the field reads the message as a heartbeat.
"""
from __future__ import annotations

import json
import re
import zlib
from typing import Any

PATH = "/v1/outlet"
EMPTY_HASH = "0" * 32  # Kong's "no configuration yet" hash
MAX_CONTROL_MESSAGE = 64 * 1024
MAX_CONFIG_BYTES = 256 * 1024 * 1024  # uncompressed; bounds a decompression bomb
MAX_CONFIG_FRAME = 64 * 1024 * 1024  # compressed, on the wire

_STR = (str,)
_OPT_STR = (str, type(None))
_NUM = (int, float)
MESSAGES: dict[str, dict[str, tuple[type, ...]]] = {
    "hello": {"node_id": _STR, "hostname": _STR, "version": _STR, "labels": (dict,), "config_hash": _STR,
              "heartbeat": _NUM},
    "ping": {"config_hash": _STR},
    "applied": {"config_hash": _STR, "ms": _NUM},
    "rejected": {"config_hash": _STR, "error": _STR},
    "error": {"reason": _STR, "message": _STR},
    "csr": {"csr": _STR},
    "certificate": {"cert": _STR, "ca": _STR},
    "health": {"inbound": (dict,)},  # meshway dp run: readiness of each inbound, {"<port>": bool}
    "goodbye": {},  # meshway dp run: shutting down on purpose, deregister me (kuma#13403)
    "mesh_stats": {"text": (str,)},  # meshway dp run: its per-service metrics (meshway.mesh._meshstats)
    "resync": {"config_hash": _STR},  # a delta did not fit the version the DP runs: send the whole config
    "mesh_gateway": {},  # a mesh gateway: its registration (TTL heartbeat) or deregistration (meshway.zones._gwlink)
}
OPTIONAL: dict[str, dict[str, tuple[type, ...]]] = {
    "hello": {"mesh_inbound": (list,), "token": (str,), "dataplane": (dict,), "mesh": (str,), "name": (str,),
              "delta": (bool,)},
    "ping": {"traffic": (str,)},  # a hybrid data plane's request counters, packed (`_traffic`)
    "mesh_gateway": {"registration": (dict,), "deregister": (str,)},
}


class ProtocolError(ValueError):
    """A peer sent something the protocol does not allow; the message says what."""


def encode_message(kind: str, **fields: Any) -> str:
    """A control message as JSON text; the fields must be those of MESSAGES[kind]."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def _check_fields(kind: str, message: dict[str, Any]) -> None:
    for name, types in MESSAGES[kind].items():
        if name not in message:
            raise ProtocolError(f"{kind} message without {name!r}")
        if not isinstance(message[name], types) or isinstance(message[name], bool):
            raise ProtocolError(f"{kind} message: {name!r} has the wrong type ({type(message[name]).__name__})")
    for name, types in OPTIONAL.get(kind, {}).items():
        if name in message and not isinstance(message[name], types):
            raise ProtocolError(f"{kind} message: {name!r} has the wrong type ({type(message[name]).__name__})")


def decode_message(text: str | bytes) -> dict[str, Any]:
    """Parse and check one control message; ProtocolError if it is not one of MESSAGES."""
    if len(text) > MAX_CONTROL_MESSAGE:
        raise ProtocolError(f"control message of {len(text)} bytes exceeds {MAX_CONTROL_MESSAGE}")
    try:
        message = json.loads(text)
    except ValueError as e:
        raise ProtocolError(f"control message is not JSON: {e}") from None
    if not isinstance(message, dict) or message.get("type") not in MESSAGES:
        kind = message.get("type") if isinstance(message, dict) else type(message).__name__
        raise ProtocolError(f"unknown control message type {kind!r}")
    _check_fields(message["type"], message)
    return message


def encode_config(snapshot: dict[str, Any], config_hash: str) -> bytes:
    """The binary frame that carries one configuration."""
    body = {"type": "reconfigure", "config_hash": config_hash, "config_table": snapshot}
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6)


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_CONFIG_BYTES)
    except zlib.error as e:
        raise ProtocolError(f"config frame is not zlib data: {e}") from None
    if inflater.unconsumed_tail:
        raise ProtocolError(f"config exceeds {MAX_CONFIG_BYTES} bytes uncompressed")
    if not inflater.eof:
        raise ProtocolError("config frame is truncated")
    return out


def decode_config(data: bytes) -> tuple[dict[str, Any], str]:
    """(snapshot, hash) from a binary config frame; ProtocolError if it is not one."""
    body = decode_frame(data)
    if body["type"] != "reconfigure":
        raise ProtocolError("binary frame is not a reconfigure message")
    return body["config_table"], body["config_hash"]


def decode_frame(data: bytes) -> dict[str, Any]:
    """A binary frame's body: `reconfigure` (whole config) or `reconfigure_delta` (`_delta`, checked
    there); ProtocolError if it is neither."""
    try:
        body = json.loads(_inflate(data))
    except ValueError as e:
        raise ProtocolError(f"config frame is not JSON: {e}") from None
    if not isinstance(body, dict) or body.get("type") not in ("reconfigure", "reconfigure_delta"):
        raise ProtocolError("binary frame is not a reconfigure message")
    if body["type"] == "reconfigure_delta":
        if not isinstance(body.get("config_hash"), str):
            raise ProtocolError("reconfigure_delta message needs a string config_hash")
        return body
    if not isinstance(body.get("config_hash"), str) or not isinstance(body.get("config_table"), dict):
        raise ProtocolError("reconfigure message needs a string config_hash and an object config_table")
    return body


_MAJOR_MINOR = re.compile(r"^(\d+)\.(\d+)(?:\.|$)")


def version_incompatibility(cp_version: str, dp_version: str) -> str | None:
    """None when the CP can serve this DP version, else the reason to tell the DP and log."""
    cp = _MAJOR_MINOR.match(cp_version)
    dp = _MAJOR_MINOR.match(dp_version)
    accepted = f"{cp[1]}.{cp[2]}.x" if cp else cp_version
    if cp and dp and (cp[1], cp[2]) == (dp[1], dp[2]):
        return None
    return (f"data plane version {dp_version} is incompatible with control plane version {cp_version} "
            f"({accepted} are accepted)")


def parse_labels(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`cluster_dp_labels` entries (`key:value`) as a dict; ValueError naming a bad entry."""
    labels = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"cluster_dp_labels: invalid label {item!r} (expected key:value)")
        labels[key.strip()] = value.strip()
    return labels
