"""A meshway node: `run_node` runs the master in this process; `spawn_node` starts it detached."""
from meshway.node._daemon import run_node, spawn_node
from meshway.node._prefix import PrefixError, running_pid
from meshway.node.master import Master, StartError

__all__ = ["Master", "PrefixError", "StartError", "run_node", "running_pid", "spawn_node"]
