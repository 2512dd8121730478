"""A data plane's persistent identity and what it tells the control plane about itself."""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

log = logging.getLogger("meshway.cluster")
NODE_ID_NAME = "node_id"


def load_node_id(prefix: str | os.PathLike) -> str:
    """The UUID in `<prefix>/node_id`, created on first use; a damaged file is replaced (logged)."""
    path = Path(prefix) / NODE_ID_NAME
    try:
        return str(uuid.UUID(path.read_text().strip()))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        log.warning("node id file %s is unusable (%s); generating a new node id", path, e)
    node_id = str(uuid.uuid4())
    from meshway.pki import write_private  # the package loads cryptography only for its other names

    write_private(path, (node_id + "\n").encode(), 0o644)
    return node_id
