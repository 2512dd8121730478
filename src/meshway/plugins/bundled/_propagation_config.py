"""The `propagation` record and header-type values shared by the tracing plugins' schemas
(zipkin, opentelemetry), as Kong's `tracing/propagation` schema is shared by them."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from meshway.plugins.bundled._propagation import UNSUPPORTED_FORMATS

HEADER_TYPES = ("preserve", "ignore", "b3", "b3-single", "w3c", "jaeger", "ot", "aws", "gcp", "datadog", "instana")
FORMAT = Literal["b3", "b3-single", "w3c", "jaeger", "ot", "aws", "gcp", "datadog", "instana"]


def supported(value: str) -> str:
    """Refuse Kong's formats meshway does not write (a 400 naming the field)."""
    if value in UNSUPPORTED_FORMATS:
        raise ValueError(f"'{value}' is not supported by meshway yet (b3, b3-single, w3c, jaeger, ot)")
    return value


class PropagationConfig(BaseModel):
    """Kong's `propagation` record; each plugin sets its own `default_format`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    extract: list[FORMAT] | None = None  # type: ignore[valid-type]
    inject: list[Literal["preserve", "b3", "b3-single", "w3c", "jaeger", "ot", "aws", "gcp", "datadog",
                         "instana"]] | None = None
    clear: list[str] | None = None
    default_format: FORMAT = "w3c"  # type: ignore[valid-type]

    @field_validator("extract", "inject")
    @classmethod
    def _formats(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            supported(item)
        return value

    @field_validator("default_format")
    @classmethod
    def _format(cls, value: str) -> str:
        return supported(value)
