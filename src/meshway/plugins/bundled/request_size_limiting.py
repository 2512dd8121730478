"""request-size-limiting: refuses request bodies larger than a configured size."""
from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import Field

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext

UNITS = {"megabytes": 2**20, "kilobytes": 2**10, "bytes": 1}
TOO_LARGE = {"message": "Request size limit exceeded"}
LENGTH_REQUIRED = {"message": "A valid Content-Length header is required"}


class RequestSizeLimitingConfig(PluginConfig):
    """Kong's request-size-limiting schema."""

    allowed_payload_size: int = Field(default=128, ge=0)
    size_unit: Literal["megabytes", "kilobytes", "bytes"] = "megabytes"
    require_content_length: bool = False


class RequestSizeLimiting(Plugin):
    """413 for a declared or streamed body past the limit; 411 when a length is required."""

    name = "request-size-limiting"
    priority = 951
    Config = RequestSizeLimitingConfig

    def __init__(self, config: RequestSizeLimitingConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.limit = config.allowed_payload_size * UNITS[config.size_unit]

    def access(self, ctx: RequestContext) -> None:
        declared = ctx.get_header("content-length")
        if declared is not None and declared.strip().isdigit():
            if int(declared) > self.limit:
                # A client waiting on 100-continue has not sent the body: Kong answers 417.
                expect = (ctx.get_header("expect") or "").lower()
                ctx.exit(417 if expect == "100-continue" else 413, TOO_LARGE)
            return
        if self.config.require_content_length:
            return ctx.exit(411, LENGTH_REQUIRED)
        # No usable length (chunked): the engine counts the body as it streams.
        ctx.limit_request_body(self.limit)


PLUGIN = RequestSizeLimiting
