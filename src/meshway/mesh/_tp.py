"""The legacy `TrafficPermission` resource's schema (Kuma 1.x, still served by Kuma 2.x), for
`parse_resource`; the decision is in `_permissions`.

    type: TrafficPermission
    sources: [{match: {kuma.io/service: web, version: "*"}}]
    destinations: [{match: {kuma.io/service: backend}}]

Each selector needs the `kuma.io/service` tag (Kuma's validation, "mandatory tag"); a value
`*` matches any value of a tag the data plane carries.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

SERVICE_TAG = "kuma.io/service"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Selector(_Strict):
    match: dict[str, str]

    @field_validator("match")
    @classmethod
    def _has_service(cls, match: dict[str, str]) -> dict[str, str]:
        if SERVICE_TAG not in match:
            raise ValueError(f'mandatory tag "{SERVICE_TAG}" is missing')
        if any(not k or not v for k, v in match.items()):
            raise ValueError("tag name and value must not be empty")
        return match


class TrafficPermissionBody(_Strict):
    sources: list[Selector] = Field(min_length=1)
    destinations: list[Selector] = Field(min_length=1)
