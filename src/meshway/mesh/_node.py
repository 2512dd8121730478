"""What a node's master runs for the mesh: the `meshway dp run` listener (see `_dpserver.py`)."""
from __future__ import annotations

from typing import Any


async def start_dataplane_server(master: Any, socks: list) -> Any:
    """Serve `mesh_dp_listen` with the master's snapshot; a registration pokes the store poller."""
    from meshway.node.master import StartError

    from ._dpserver import DataplaneServer

    if len(socks) > 1:
        import logging

        logging.getLogger("meshway.mesh").warning("mesh_dp_listen has several addresses; only %s is used", socks[0][1])

    def changed() -> None:
        if master.poller is not None:
            master.poller.poke()

    try:
        server = DataplaneServer(master.settings, store=master.store, changed=changed,
                                 get_snapshot=lambda: (master.snapshot, master.config_hash))
    except (OSError, ValueError) as e:
        raise StartError(f"mesh_dp_listen: {e}") from None
    await server.start(sock=socks[0][0])
    return server
