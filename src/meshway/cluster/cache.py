"""The data plane's on-disk copy of its last applied configuration.

`<prefix>/config.cache.json.gz` holds gzip(JSON {"config_hash", "snapshot"}), mode 0600 (it holds
credentials and private keys of the config). It is written only after a config was applied, by
temp file + fsync + rename, so a crash leaves either the old cache or the new one. gzip's CRC
catches a corrupted file; a bad cache is reported and ignored, never fatal: the node then waits
for its control plane as if it had no cache.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from pathlib import Path
from typing import Any

from meshway.pki import write_private

log = logging.getLogger("meshway.cluster")
CACHE_NAME = "config.cache.json.gz"


def cache_path(prefix: str | os.PathLike) -> Path:
    return Path(prefix) / CACHE_NAME


def write_cache(prefix: str | os.PathLike, snapshot: dict[str, Any], config_hash: str) -> None:
    """Store the applied configuration for start-up without a control plane."""
    body = json.dumps({"config_hash": config_hash, "snapshot": snapshot}, separators=(",", ":")).encode()
    write_private(cache_path(prefix), gzip.compress(body, compresslevel=6, mtime=0), 0o600)


def _decode(data: bytes) -> tuple[dict[str, Any], str]:
    body = json.loads(gzip.decompress(data))
    if not isinstance(body, dict) or not isinstance(body.get("config_hash"), str):
        raise ValueError("no config_hash in the cache")
    if not isinstance(body.get("snapshot"), dict):
        raise ValueError("no snapshot object in the cache")
    return body["snapshot"], body["config_hash"]


def load_cache(prefix: str | os.PathLike) -> tuple[dict[str, Any], str] | None:
    """(snapshot, hash) from the cache, or None if there is none or it is unusable (logged)."""
    path = cache_path(prefix)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.error("cannot read cached configuration %s: %s; starting without it", path, e.strerror)
        return None
    try:
        return _decode(data)
    except (OSError, EOFError, zlib.error, ValueError) as e:
        reason = "file is truncated" if isinstance(e, EOFError) else str(e) or type(e).__name__
        log.error("cached configuration %s is corrupted (%s); ignoring it until the control plane sends one",
                  path, reason)
        return None
