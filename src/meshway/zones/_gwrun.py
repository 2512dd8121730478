"""`meshway connect envoy -mesh-gateway`: a mesh gateway, as Consul's command runs one.

Theory of operation. Consul's command registers the gateway with its agent and execs Envoy with
a bootstrap that points at the agent, which then streams the gateway's listeners. Here:
- the gateway's proxy is a DB-less meshway node (its own prefix, `stream_listen` = the LAN
  address and the WAN address, `proxy_listen off`, its Admin API on `-admin-bind`, loopback);
- this process registers the gateway with the zone's control plane (Consul's
  `PUT /v1/agent/service/register`, repeated every `HEARTBEAT` s: the TTL check), fetches the
  zone's gateway document (`GET /v1/zones/gateway-config`: TLS passthrough routes by SNI) and
  loads it into the node with `POST /config` whenever it changed (the node keeps serving its last
  document while the control plane is unreachable);
- SIGTERM or SIGINT: deregister, stop the node, exit 0.
The node never holds a workload key: it forwards TLS it cannot read.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("meshway.zones.gateway")

HEARTBEAT = 5.0  # seconds between registrations (the control plane's TTL is three of them)
POLL = 1.0  # seconds between fetches of the gateway document


class GatewayError(RuntimeError):
    pass


def _listen(lan: str, wan: str) -> str:
    return ", ".join(dict.fromkeys(a for a in (lan, wan) if a))


def node_settings(lan: str, wan: str, admin_bind: str, status_listen: str, workers: str) -> dict[str, str]:
    """The gateway node's settings (what `meshway start` reads from its conf file)."""
    return {"role": "traditional", "database": "off", "proxy_listen": "off", "stream_listen": _listen(lan, wan),
            "admin_listen": admin_bind, "status_listen": status_listen or "off", "cluster_listen": "off",
            "mesh_dp_listen": "off", "workers": workers, "log_level": "info"}


def registration(service: str, gid: str, lan: str, wan: str) -> dict[str, Any]:
    """The body Consul's `connect envoy -register` sends for a mesh gateway."""
    from ._catalog import split

    lan_ip, lan_port = split(lan)
    body: dict[str, Any] = {"Kind": "mesh-gateway", "ID": gid, "Name": service, "Address": lan_ip, "Port": lan_port,
                            "TaggedAddresses": {"lan": {"Address": lan_ip, "Port": lan_port}}}
    if wan:
        wan_ip, wan_port = split(wan)
        body["TaggedAddresses"]["wan"] = {"Address": wan_ip, "Port": wan_port}
    return body


class Gateway:
    """One running gateway: its node process and the loop that keeps it registered and current."""

    def __init__(self, *, cp: str, token: str | None, service: str, gid: str, lan: str, wan: str, register: bool,
                 work_dir: Path, admin_bind: str, status_listen: str = "", workers: str = "1",
                 prometheus_bind: str = "", prometheus_path: str = "/metrics") -> None:
        self.cp, self.token, self.service, self.gid = cp.rstrip("/"), token, service, gid
        self.lan, self.wan, self.register = lan, wan, register
        self.work, self.admin_bind = work_dir, admin_bind
        self.settings = node_settings(lan, wan, admin_bind, status_listen, workers)
        self.stop = threading.Event()
        self.node: subprocess.Popen | None = None
        self._loaded: str | None = None
        self.prometheus_bind, self.prometheus_path = prometheus_bind, prometheus_path
        self.counters: Any = None
        self._follower: Any = None

    # ---- the node ------------------------------------------------------------------------
    def start_node(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        conf = self.work / "gateway.conf"
        conf.write_text("".join(f"{k} = {v}\n" for k, v in self.settings.items()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
        meshway = str(Path(sys.executable).with_name("meshway"))
        self.node = subprocess.Popen([meshway, "start", "--foreground", "-p", str(self.work / "node"), "-c", str(conf)],
                                     env=env, stdin=subprocess.DEVNULL)

    def _admin(self) -> str:
        host, _, port = self.admin_bind.split(",")[0].split()[0].rpartition(":")
        return f"http://{host or '127.0.0.1'}:{port}"

    def stop_node(self) -> None:
        if self.node is not None and self.node.poll() is None:
            self.node.send_signal(signal.SIGTERM)
            try:
                self.node.wait(20)
            except subprocess.TimeoutExpired:
                self.node.kill()

    # ---- the control plane -----------------------------------------------------------------
    def _cp(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        headers = {"Kong-Admin-Token": self.token} if self.token else {}
        response = httpx.request(method, self.cp + path, headers=headers, timeout=10, **kw)
        if response.status_code >= 400:
            raise GatewayError(f"{method} {path}: {response.status_code} {response.text.strip()[:300]}")
        return response.json() if response.content else None

    def heartbeat(self) -> None:
        self._cp("PUT", "/v1/agent/service/register", json=registration(self.service, self.gid, self.lan, self.wan))

    def deregister(self) -> None:
        self._cp("PUT", f"/v1/agent/service/deregister/{self.gid}")

    def sync(self) -> bool:
        """Load the zone's current gateway document into the node; True when it changed."""
        return self.load(self._cp("GET", "/v1/zones/gateway-config"))

    def node_ready(self) -> bool:
        import httpx

        try:
            return httpx.get(self._admin() + "/status", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def load(self, document: dict[str, Any]) -> bool:
        """Load a gateway document into the node (unless it is the one loaded); True when it changed."""
        import httpx

        digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
        if digest == self._loaded:
            return False
        response = httpx.post(self._admin() + "/config", json=document, timeout=30)
        if response.status_code >= 400:
            raise GatewayError(f"the gateway node refused its routes: {response.status_code} {response.text[:300]}")
        self._loaded = digest
        routes = ", ".join(r["name"] for s in document["services"] for r in s["routes"]) or "none"
        log.info("mesh gateway routes loaded: %s", routes)
        return True

    # ---- the loop --------------------------------------------------------------------------
    def start_metrics(self) -> None:
        """Per-SNI connection counts from the node's access log (`_gwmetrics`), if asked for."""
        if not self.prometheus_bind:
            return
        from ._gwmetrics import LogFollower, SniCounters, serve_metrics

        self.counters = SniCounters()
        self._follower = LogFollower(self.work / "node" / "logs" / "access.log")
        self._metrics_server = serve_metrics(self.prometheus_bind, self.prometheus_path, self.counters)
        log.info("per-SNI metrics on http://%s%s", self.prometheus_bind, self.prometheus_path)

    def count(self) -> None:
        if self._follower is None:
            return
        from ._gwmetrics import parse_line

        for line in self._follower.new_lines():
            fields = parse_line(line)
            if fields is not None:
                self.counters.add(fields)

    def run(self) -> int:
        self.start_metrics()
        self.start_node()
        registered_at = None
        failing = ""
        try:
            while not self.stop.is_set():
                if self.node.poll() is not None:
                    log.error("the gateway's proxy exited with status %s", self.node.returncode)
                    return 1
                try:
                    self.count()
                    now = _monotonic()
                    if self.register and (registered_at is None or now - registered_at >= HEARTBEAT):
                        self.heartbeat()
                        if registered_at is None:
                            log.info("mesh gateway %s registered (lan %s, wan %s)", self.gid, self.lan, self.wan or "-")
                        registered_at = now
                    self.sync()
                    if failing:
                        log.info("control plane %s reachable again", self.cp)
                    failing = ""
                except Exception as e:  # the control plane may come back; keep forwarding meanwhile
                    if str(e) != failing:
                        log.warning("%s (the gateway keeps its last routes)", e)
                    failing = str(e)
                self.stop.wait(POLL)
        finally:
            if self.register and registered_at is not None:
                try:
                    self.deregister()
                    log.info("mesh gateway %s deregistered", self.gid)
                except Exception as e:
                    log.warning("could not deregister: %s", e)
            self.stop_node()
            if self.counters is not None:
                self._metrics_server.shutdown()
        return 0


def _monotonic() -> float:
    import time

    return time.monotonic()
