"""syslog: sends Kong's log serializer JSON to the local syslog daemon (the /dev/log socket).

Each entry is one datagram as glibc's syslog(3) writes it with ident `kong` and LOG_PID:
`<PRI>Mmm dd HH:MM:SS kong[pid]: {json}`, PRI = facility * 8 + severity, the severity picked
by the response status (successful / client errors / server errors) and sent only when it is at
least as severe as `log_level`, as in Kong.
"""
from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Literal, Mapping

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS
from meshway.plugins.bundled._queue import BatchQueue
from meshway.plugins.bundled._sockets import FIRE_AND_FORGET

SYSLOG_SOCKET = "/dev/log"
Severity = Literal["debug", "info", "notice", "warning", "err", "crit", "alert", "emerg"]
SEVERITIES = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}
Facility = Literal["auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog",
                   "user", "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"]
FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
              "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
              **{f"local{i}": 16 + i for i in range(8)}}


class SyslogConfig(PluginConfig):
    """Kong's syslog schema (custom_fields_by_lua is not supported)."""

    log_level: Severity = "info"
    successful_severity: Severity = "info"
    client_errors_severity: Severity = "info"
    server_errors_severity: Severity = "info"
    facility: Facility = "user"
    custom_fields_by_lua: None = None


class SyslogSender:
    """Writes datagrams to the syslog socket without ever blocking: a full socket drops the batch."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None

    async def __call__(self, batch: list[bytes]) -> None:
        try:
            if self.sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)
                try:
                    sock.connect(self.path)
                except OSError:
                    sock.close()
                    raise
                self.sock = sock
            for entry in batch:
                self.sock.send(entry)
        except OSError as e:  # the daemon restarted (stale socket), is absent, or is not reading
            if self.sock is not None:
                self.sock.close()
                self.sock = None
            raise RuntimeError(f"cannot send to {self.path}: {e}") from e


_QUEUE: list[BatchQueue] = []


def _queue() -> BatchQueue:
    if not _QUEUE:
        _QUEUE.append(BatchQueue(f"syslog {SYSLOG_SOCKET}", SyslogSender(SYSLOG_SOCKET), FIRE_AND_FORGET))
    return _QUEUE[0]


class Syslog(Plugin):
    """Sends request logs to the local syslog daemon, in the background."""

    name = "syslog"
    priority = 4
    Config = SyslogConfig
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    stream = True

    def __init__(self, config: SyslogConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        facility = FACILITIES[config.facility] * 8
        threshold = SEVERITIES[config.log_level]
        # PRI per status class, or None when that class's severity is below log_level.
        self.pri = tuple(facility + SEVERITIES[s] if SEVERITIES[s] <= threshold else None
                         for s in (config.successful_severity, config.client_errors_severity,
                                   config.server_errors_severity))
        self.queue = _queue()

    def log(self, ctx: RequestContext) -> None:
        status = ctx.response_status or ctx.status or 0
        pri = self.pri[2 if status >= 500 else 1 if status >= 400 else 0]
        if pri is None:
            return
        stamp = time.strftime("%b %e %H:%M:%S")
        message = json.dumps(ctx.log_fields(), separators=(",", ":"), default=str)
        self.queue.add(f"<{pri}>{stamp} kong[{os.getpid()}]: {message}".encode())


PLUGIN = Syslog
