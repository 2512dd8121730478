"""A mesh gateway that authenticates to its zone as a data plane does (a dataplane token).

Theory of operation (`meshway connect envoy -mesh-gateway -grpc-addr https://CP:5678 -token-file F`):
- Consul's Envoy reaches its agent's xDS server at `-grpc-addr` with the ACL token; here the
  gateway reaches its zone's data plane server (`mesh_dp_listen`, Kuma's 5678) with a dataplane
  token (`meshway generate dataplane-token --name <gateway id>`), exactly as `meshway dp run`:
  the token is checked (signature, expiry, revocation, bound name), the control plane is verified
  against the CA the token pins, and no Admin API credential is involved.
- The hello carries the gateway's own Dataplane (Kuma's gateway form: `networking.gateway` with
  `kuma.io/service: <service>`, address the LAN address, `advertisedAddress` the WAN address):
  the zone lists it as any data plane, and a SIGTERM deletes it (`goodbye`).
- On the same link the gateway registers as Consul's agent registers it (`mesh_gateway`
  messages: the registration body, every `HEARTBEAT` s: the TTL check of `_health`), and it
  deregisters before its goodbye. The control plane takes a registration only for the name the
  token is bound to (`on_message`).
- The zone's configuration is pushed on the link; the gateway computes its routes from it
  (`_catalog.gateway_config`, the same document `GET /v1/zones/gateway-config` serves) and loads
  them into its node. It never holds a workload key: it asks for no mesh certificate.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from ._catalog import RegistrationError, gateway_config, gateway_record
from ._gwrun import HEARTBEAT, POLL, Gateway, registration

log = logging.getLogger("meshway.zones.gateway")
MESSAGE = "mesh_gateway"


def gateway_dataplane(gateway: Gateway, mesh: str) -> dict[str, Any]:
    """The gateway's Dataplane (Kuma's form of a gateway data plane)."""
    record = gateway_record(registration(gateway.service, gateway.gid, gateway.lan, gateway.wan))
    lan_ip, wan_ip = record["LAN"].rpartition(":")[0].strip("[]"), record["WAN"].rpartition(":")[0].strip("[]")
    networking: dict[str, Any] = {"address": lan_ip,
                                  "gateway": {"type": "DELEGATED", "tags": {"kuma.io/service": gateway.service}}}
    if wan_ip != lan_ip:
        networking["advertisedAddress"] = wan_ip
    return {"type": "Dataplane", "mesh": mesh, "name": gateway.gid, "networking": networking}


def link_settings(work: Path, cp: str) -> Any:
    """The link's own settings (its node id, its cache): a data plane that asks for no certificate."""
    from meshway.settings import load_settings

    work.mkdir(parents=True, exist_ok=True)
    conf = work / "link.conf"
    values = {"prefix": str(work), "role": "data_plane", "database": "off", "cluster_control_plane": cp,
              "proxy_listen": "off", "admin_listen": "off", "status_listen": "off", "cluster_listen": "off",
              "mesh_dp_listen": "off", "mesh_mtls": "off", "cluster_data_plane_heartbeat": "5"}
    conf.write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
    return load_settings(str(conf), env={})


class GatewayLink:
    """Runs a gateway (`_gwrun.Gateway`: its node, its metrics) fed and registered over the link."""

    def __init__(self, gateway: Gateway, *, cp_host: str, cp_port: int, token: str, ca_file: str | None,
                 mesh: str) -> None:
        self.gateway, self.token, self.mesh = gateway, token, mesh
        self.cp_host, self.cp_port, self.ca_file = cp_host, cp_port, ca_file
        self.refused: str | None = None
        self.client: Any = None

    async def _apply(self, snapshot: dict[str, Any], config_hash: str) -> float:
        started = time.monotonic()
        datacenter = (snapshot.get("zones") or {}).get("datacenter") or "dc1"
        await asyncio.to_thread(self.gateway.load, gateway_config(snapshot, datacenter))
        return (time.monotonic() - started) * 1000

    def _refused(self, message: str) -> None:
        self.refused = message
        self.gateway.stop.set()

    async def _send(self, **fields: Any) -> bool:
        return await self.client.send(MESSAGE, **fields)

    async def run(self) -> int:
        from meshway.mesh._dp import DataplaneClient, DpOptions

        g = self.gateway
        target = f"[{self.cp_host}]:{self.cp_port}" if ":" in self.cp_host else f"{self.cp_host}:{self.cp_port}"
        options = DpOptions(cp_host=self.cp_host, cp_port=self.cp_port, token=self.token, ca_file=self.ca_file,
                            dataplane=gateway_dataplane(g, self.mesh), mesh=self.mesh, name=g.gid,
                            work_dir=str(g.work / "link"), dns_enabled=False)
        self.client = DataplaneClient(link_settings(g.work / "link", target), options=options,
                                      on_refused=self._refused, apply=self._apply)
        g.start_metrics()
        g.start_node()
        for _ in range(300):  # its Admin API up (bounded: 30 s), so the first push loads at once
            if g.node.poll() is not None or await asyncio.to_thread(g.node_ready):
                break
            await asyncio.sleep(0.1)
        await self.client.start()
        body = registration(g.service, g.gid, g.lan, g.wan)
        registered_at: float | None = None
        try:
            while not g.stop.is_set():
                if g.node.poll() is not None:
                    log.error("the gateway's proxy exited with status %s", g.node.returncode)
                    return 1
                g.count()
                now = time.monotonic()
                if g.register and (registered_at is None or now - registered_at >= HEARTBEAT):
                    if await self._send(registration=body):
                        if registered_at is None:
                            log.info("mesh gateway %s registered over the data plane link (lan %s, wan %s)",
                                     g.gid, g.lan, g.wan or "-")
                        registered_at = now
                await asyncio.sleep(POLL)
        finally:
            await self._leave(registered_at is not None)
        if self.refused:
            log.error("the control plane refused this gateway: %s", self.refused)
            return 1
        return 0

    async def _leave(self, registered: bool) -> None:
        if registered and not self.refused and await self._send(deregister=self.gateway.gid):
            log.info("mesh gateway %s deregistered", self.gateway.gid)
        if not self.refused and await self.client.send("goodbye"):
            await asyncio.sleep(0.1)  # let the frames leave before the close
        await self.client.stop()
        await asyncio.to_thread(self.gateway.stop_node)
        if self.gateway.counters is not None:
            self.gateway._metrics_server.shutdown()


def on_message(store: Any, mesh: str, name: str, msg: dict[str, Any]) -> None:
    """A `mesh_gateway` message from data plane `mesh/name` (authenticated by its token): register,
    heartbeat or deregister the gateway of that name; anything else is refused with a warning."""
    from ._health import deregister, heartbeat

    if msg.get("deregister") is not None:
        if msg["deregister"] == name:
            deregister(store, name)
        return
    try:
        record = gateway_record(msg.get("registration"))
    except RegistrationError as e:
        log.warning("mesh gateway registration from dataplane %s/%s refused: %s", mesh, name, e)
        return
    if record["ID"] != name:
        log.warning("mesh gateway registration from dataplane %s/%s refused: ID %r is not the name its token "
                    "is bound to", mesh, name, record["ID"])
        return
    heartbeat(store, record)


def token_text(token: str, token_file: str) -> str:
    """`-token` or `-token-file` (Consul's flags), or `$CONSUL_HTTP_TOKEN`: the dataplane token."""
    if token_file:
        return Path(token_file).read_text()
    return token or os.environ.get("CONSUL_HTTP_TOKEN", "")
