"""The mesh CA shared by every control plane node on one database.

Rules:
- The CA (`<prefix>/mesh/ca.crt`, `ca.key`; see `_ca`) signs the dataplane tokens, the
  certificate each node shows `meshway dp run` data planes and, without per-mesh mTLS, the data
  planes' certificates. Nodes on one database must therefore hold the same one: a token issued
  through one node must be accepted by the others, and a data plane verifying its control plane
  against the CA its token pins must accept whichever node it reaches. Kuma keeps its CAs and
  signing keys as secrets in its store for the same reason.
- At start, a control plane with a database offers its CA (the one in its prefix, made now if
  there is none) and gets back the stored one: the first node's wins (an insert that loses a
  race with another node reads the winner's). A node whose prefix held another CA adopts the
  stored one, keeps its own as `ca.crt.replaced` / `ca.key.replaced`, and says so (tokens it
  issued before no longer verify); its control plane certificate is made again from the new CA.
- The row is not configuration: writing it does not bump the store's version, it is never in
  a snapshot or an export.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ._ca import MeshCA

log = logging.getLogger("meshway.mesh")


def share_ca(store: Any, directory: str | Path) -> MeshCA:
    """This node's mesh CA made the one stored in `store` (see the module's rules)."""
    from cryptography.hazmat.primitives import serialization

    directory = Path(directory)
    had_one = (directory / "ca.crt").exists() and (directory / "ca.key").exists()
    local = MeshCA.load_or_create(directory)
    key_pem = local.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
    stored = store.mesh.control_plane_ca({"cert": local.cert_pem, "key": key_pem})
    if stored["cert"] == local.cert_pem:
        return local
    if had_one:
        for name in ("ca.crt", "ca.key"):
            os.replace(directory / name, directory / f"{name}.replaced")
        log.warning("this node's mesh CA (%s) differs from the one the database holds: using the database's, "
                    "so that every control plane node signs and accepts the same tokens and certificates; the old "
                    "one is kept as ca.crt.replaced (tokens it signed no longer verify)", directory / "ca.crt")
    _write(directory, stored["cert"], stored["key"])
    for name in ("cp.crt", "cp.key"):  # issued by the CA just replaced: made again from the stored one
        (directory / name).unlink(missing_ok=True)
    return MeshCA.load_or_create(directory)


def _write(directory: Path, cert: str, key: str) -> None:
    from meshway.pki._files import write_private

    write_private(directory / "ca.key", key.encode(), 0o600)
    write_private(directory / "ca.crt", cert.encode(), 0o644)
