"""A meshway node: `run_node` runs the master in this process; `spawn_node` starts it detached."""
from typing import TYPE_CHECKING

from meshway._lazy import lazy_attributes

if TYPE_CHECKING:
    from meshway.node._daemon import run_node, spawn_node
    from meshway.node._prefix import PrefixError, running_pid
    from meshway.node.master import Master, StartError

__all__ = ["Master", "PrefixError", "StartError", "run_node", "running_pid", "spawn_node"]


# `meshway start` only spawns the master: importing `master` (store, Admin API, cluster,
# ~0.3 s) in the CLI process would delay the start for nothing. A proxy worker
# (`meshway.node.worker`) imports this package too and needs none of these names.
__getattr__ = lazy_attributes(__name__, globals(), {
    "Master": ".master", "StartError": ".master", "run_node": "._daemon", "spawn_node": "._daemon",
    "PrefixError": "._prefix", "running_pid": "._prefix",
})
