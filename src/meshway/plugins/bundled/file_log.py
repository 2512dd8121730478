"""file-log: appends one JSON line per request (Kong's log serializer shape) to a file."""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Mapping

from pydantic import field_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS

log = logging.getLogger("meshway.plugins")
_PATH = re.compile(r"^[\w\-./ ]+$")
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND


class FileLogConfig(PluginConfig):
    """Kong's file-log schema (custom_fields_by_lua is not supported)."""

    path: str
    reopen: bool = False
    custom_fields_by_lua: None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not _PATH.match(value):
            raise ValueError("not a valid filename")
        return value


class FileLog(Plugin):
    """Writes request logs to a file, one JSON object per line."""

    name = "file-log"
    priority = 9
    Config = FileLogConfig
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    stream = True

    def __init__(self, config: FileLogConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.fd: int | None = None

    def log(self, ctx: RequestContext) -> None:
        line = json.dumps(ctx.log_fields(), separators=(",", ":"), default=str).encode() + b"\n"
        try:
            self.write(line)
        except OSError as e:  # a full disk or a removed directory must not hurt traffic
            log.error("file-log: cannot write to %s: %s", self.config.path, e)
            self.close()

    def write(self, line: bytes) -> None:
        # O_APPEND makes each line one atomic append, even with several workers on one file.
        if self.fd is None:
            self.fd = os.open(self.config.path, FLAGS, 0o644)
        os.write(self.fd, line)
        if self.config.reopen:
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __del__(self) -> None:
        self.close()


PLUGIN = FileLog
