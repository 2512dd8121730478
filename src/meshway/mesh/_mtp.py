"""The `MeshTrafficPermission` resource's schema (Kuma 2.x Universal `spec`), for `parse_resource`.

Kept apart from `_permissions` (the decision), which proxy workers import: pydantic is only
needed where resources are validated (control plane, CLI).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_FROM_KINDS = ("Mesh", "MeshSubset", "MeshService", "MeshServiceSubset")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TargetRef(_Strict):
    kind: Literal["Mesh", "MeshSubset", "MeshService", "MeshServiceSubset", "Dataplane"]
    name: str | None = None
    tags: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    sectionName: str | None = None
    namespace: str | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> "TargetRef":
        if self.kind in ("MeshService", "MeshServiceSubset") and not self.name:
            raise ValueError(f"name: must be set with kind {self.kind}")
        if self.kind == "Mesh" and (self.name or self.tags or self.labels or self.sectionName):
            raise ValueError("kind: Mesh takes no name, tags, labels or sectionName")
        if self.kind in ("MeshSubset", "MeshServiceSubset") and self.tags is None:
            raise ValueError(f"tags: must be set with kind {self.kind}")
        return self


class Conf(_Strict):
    action: Literal["Allow", "Deny", "AllowWithShadowDeny"]


class From(_Strict):
    targetRef: TargetRef
    default: Conf

    @model_validator(mode="after")
    def _from_kind(self) -> "From":
        if self.targetRef.kind not in _FROM_KINDS:
            raise ValueError(f"targetRef.kind: {self.targetRef.kind} is not supported in from (use one of "
                             f"{', '.join(_FROM_KINDS)})")
        return self


class Spec(_Strict):
    targetRef: TargetRef | None = None
    from_: list[From] = Field(default_factory=list, alias="from")

    @model_validator(mode="after")
    def _has_from(self) -> "Spec":
        if not self.from_:
            raise ValueError("from: needs at least one item")
        return self


class MeshTrafficPermissionBody(_Strict):
    """The resource's body (besides type/mesh/name): Kuma's Universal `spec`."""
    spec: Spec

    def model_dump(self, **kw: Any) -> dict[str, Any]:
        return super().model_dump(**{**kw, "by_alias": True})
