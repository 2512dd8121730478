"""An example third-party meshway plugin: adds a header to the upstream request and the response."""
from __future__ import annotations

from meshway.plugins import Plugin, PluginConfig

__all__ = ["AddHeaderPlugin"]


class AddHeaderConfig(PluginConfig):
    """Which header to add, and its value."""

    header_name: str = "X-Example"
    header_value: str = "hello"


class AddHeaderPlugin(Plugin):
    """Adds one header to the request sent upstream and to the response."""

    name = "example-add-header"
    priority = 810
    version = "0.1.0"
    Config = AddHeaderConfig

    def access(self, ctx) -> None:
        ctx.set_header(self.config.header_name, self.config.header_value)

    def response(self, ctx) -> None:
        ctx.set_response_header(self.config.header_name, self.config.header_value)
