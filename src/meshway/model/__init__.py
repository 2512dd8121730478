"""Entities declared as data, their validation (Kong's rules and messages), and the snapshot document.

Public names:
- `ENTITIES` (name -> Entity, in dependency order), `Entity.validate(data, existing=...)`.
- `parse_declarative(text_or_dict) -> snapshot`, `to_declarative(snapshot) -> document`,
  `snapshot_hash(snapshot) -> str`, `empty_snapshot()`.
- `decode_form(pairs)` + `coerce_input(entity, body)`: Kong's form decoding.
- `pcre_to_python(pattern)`: Kong's regex paths use PCRE named groups `(?<name>...)`.
- Secret references `{vault://env/NAME}` (see `_vaults`): `is_reference`, `has_references`,
  `reference_errors(collection, row, vaults)`, `resolve_snapshot(snapshot)`.
- Errors, each with Kong's code/name/status and `.body()`: `SchemaViolation`, `DeclarativeError`,
  `ForeignKeyViolation`, `UniqueViolation`, `PrimaryKeyViolation`, `NotFound`, `InvalidOption`,
  `InvalidSize`, `InvalidOffset`, `ReferencedByOthers`.
"""
from meshway.model._declarative import (FORMAT_VERSIONS, empty_snapshot, load_document, parse_declarative,
                                        snapshot_hash, to_declarative)
from meshway.model._entity import Companion, Entity, stable_id
from meshway.model._errors import (DeclarativeError, EntityError, ForeignKeyViolation, InvalidOffset,
                                   InvalidOption, InvalidSize, NotFound, PrimaryKeyViolation, ReferencedByOthers,
                                   SchemaViolation, UniqueViolation, flatten_fields)
from meshway.model._forms import coerce_input, decode_form
from meshway.model._rules import plugin_runs_on_route
from meshway.model._types import Field, Foreign
from meshway.model._values import pcre_to_python
from meshway.model._vaults import has_references, is_reference, reference_errors, resolve_snapshot
from meshway.model.entities import ENTITIES

__all__ = [
    "ENTITIES",
    "FORMAT_VERSIONS",
    "Companion",
    "DeclarativeError",
    "Entity",
    "EntityError",
    "Field",
    "Foreign",
    "ForeignKeyViolation",
    "InvalidOffset",
    "InvalidOption",
    "InvalidSize",
    "NotFound",
    "PrimaryKeyViolation",
    "ReferencedByOthers",
    "SchemaViolation",
    "UniqueViolation",
    "coerce_input",
    "decode_form",
    "empty_snapshot",
    "flatten_fields",
    "has_references",
    "is_reference",
    "load_document",
    "parse_declarative",
    "pcre_to_python",
    "plugin_runs_on_route",
    "reference_errors",
    "resolve_snapshot",
    "snapshot_hash",
    "stable_id",
    "to_declarative",
    "validate_entity",
]


def validate_entity(collection: str, data: dict, **kw) -> dict:
    """Shortcut: `ENTITIES[collection].validate(data, **kw)`."""
    return ENTITIES[collection].validate(data, **kw)
