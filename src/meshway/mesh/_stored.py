"""`meshway dp run --name N --mesh M` without a Dataplane file: the stored Dataplane, before the listeners.

The listeners (transparent proxying's `redirectPortInbound`/`redirectPortOutbound`, or each
inbound and outbound) are fixed when the data plane starts, and without `--dataplane-file` only
the control plane knows the resource. So a first, short session with the control plane (the
same hello, token and TLS as the real one) receives the configuration, which carries the stored
Dataplane; the configuration is cached in the work directory as usual, so the data plane then
starts serving it at once. A refusal (no such Dataplane, bad token) ends `dp run` with the
control plane's reason, as Kuma's kuma-dp does; an unreachable control plane falls back to the
cached configuration's Dataplane, else to Kuma's default ports with a warning.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("meshway.mesh")
FETCH_TIMEOUT = 20.0  # s to wait for the control plane's first configuration


class DataplaneRefused(Exception):
    """The control plane refused this data plane; the message is its reason."""


def own_dataplane(snapshot: dict[str, Any] | None, mesh: str, name: str) -> dict[str, Any] | None:
    section = (snapshot or {}).get("mesh_resources") or {}
    return next((d for d in section.get("dataplanes") or () if d.get("mesh") == mesh and d.get("name") == name),
                None)


def fetch_stored(settings: Any, options: Any, timeout: float = FETCH_TIMEOUT) -> dict[str, Any] | None:
    """The stored Dataplane `options.mesh/options.name` (None: unknown, use defaults); raises DataplaneRefused."""
    from meshway.cluster import load_cache

    try:
        snapshot = asyncio.run(_first_configuration(settings, options, timeout))
    except TimeoutError:
        cached = load_cache(options.work_dir)
        found = own_dataplane(cached[0] if cached else None, options.mesh, options.name)
        log.warning("the control plane did not answer within %gs: listening as the %s Dataplane says",
                    timeout, "cached" if found else "default (no cached)")
        return found
    return own_dataplane(snapshot, options.mesh, options.name)


async def _first_configuration(settings: Any, options: Any, timeout: float) -> dict[str, Any]:
    from ._dp import DataplaneClient

    loop = asyncio.get_running_loop()
    got: asyncio.Future = loop.create_future()

    async def capture(snapshot: dict[str, Any], config_hash: str) -> float:
        if not got.done():
            got.set_result(snapshot)
        return 0.0

    def refused(message: str) -> None:
        if not got.done():
            got.set_exception(DataplaneRefused(message))

    client = DataplaneClient(settings, options=options, on_refused=refused, apply=capture)
    await client.start()
    try:
        return await asyncio.wait_for(got, timeout)
    finally:
        await asyncio.sleep(0.2)  # the `applied` answer and the cache write go out first
        await client.stop()
