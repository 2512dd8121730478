"""Kong-shaped errors: each carries the `code`, `name` and HTTP status of Kong's `kong/db/errors.lua`.

`body()` is the JSON the Admin API sends; array positions inside `fields` are dicts keyed by
int internally and become lists (with nulls) on the wire, as Kong's Lua tables do.
"""
from __future__ import annotations

from typing import Any

SCHEMA_VIOLATION = 2
PRIMARY_KEY_VIOLATION = 3
FOREIGN_KEY_VIOLATION = 4
UNIQUE_VIOLATION = 5
NOT_FOUND = 6
INVALID_OFFSET = 7
INVALID_SIZE = 9
INVALID_OPTIONS = 11
OPERATION_UNSUPPORTED = 12
DECLARATIVE_CONFIG = 14
REFERENCED_BY_OTHERS = 19


class EntityError(Exception):
    """Base of the errors an entity operation can raise; renders as Kong's error body."""

    code = 0
    name = "error"
    status = 400

    def __init__(self, message: str, fields: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "name": self.name, "message": self.message}
        if self.fields is not None:
            out["fields"] = wire_fields(self.fields)
        return out


class SchemaViolation(EntityError):
    """Input does not match an entity's schema; `fields` maps each bad field to its message."""

    code, name = SCHEMA_VIOLATION, "schema violation"

    def __init__(self, fields: dict, message: str | None = None) -> None:
        super().__init__(message or schema_message(fields), fields)


class ForeignKeyViolation(EntityError):
    """A reference points nowhere, or a delete is refused because something still points here."""

    code, name = FOREIGN_KEY_VIOLATION, "foreign key violation"


class ReferencedByOthers(EntityError):
    """A delete refused because an entity still names this one in a list (a service's `ca_certificates`)."""

    code, name = REFERENCED_BY_OTHERS, "referenced by others"


class UniqueViolation(EntityError):
    """A unique field already holds that value (HTTP 409)."""

    code, name, status = UNIQUE_VIOLATION, "unique constraint violation", 409


class PrimaryKeyViolation(EntityError):
    """An entity with that id already exists."""

    code, name = PRIMARY_KEY_VIOLATION, "primary key violation"


class NotFound(EntityError):
    """No entity matches (HTTP 404 `{"message": "Not found"}`)."""

    code, name, status = NOT_FOUND, "not found", 404

    def __init__(self, message: str = "Not found") -> None:
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


class InvalidOption(EntityError):
    """A query option (size, offset, tags) is malformed."""

    code, name = INVALID_OPTIONS, "invalid option"


class InvalidSize(InvalidOption):
    """`size` is not an integer in 1..1000."""

    code, name = INVALID_SIZE, "invalid size"


class InvalidOffset(InvalidOption):
    """`offset` is not a token this API handed out."""

    code, name = INVALID_OFFSET, "invalid offset"


class DeclarativeError(EntityError):
    """A declarative config is invalid; `errors` maps paths (`services[2].routes[0].paths[1]`) to messages."""

    code, name = DECLARATIVE_CONFIG, "invalid declarative configuration"

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(sorted(errors.items()))
        shown = "; ".join(f"{k}: {v}" for k, v in self.errors.items())
        super().__init__(f"declarative config is invalid: {shown}", self.errors)


# What pydantic puts before the message of a ValueError / AssertionError a validator raises; Kong's
# messages are the validator's own words.
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def validator_message(msg: str) -> str:
    """A pydantic error message as Kong words it: without pydantic's "Value error, " prefix."""
    for prefix in _PYDANTIC_PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def flatten_fields(fields: dict | str | list, prefix: str = "") -> dict[str, str]:
    """Nested field errors to `a.b[1].c: message` pairs; `@entity` errors land on the prefix."""
    if isinstance(fields, str):
        return {prefix or "@entity": fields}
    if isinstance(fields, list):
        return {prefix or "@entity": "; ".join(str(f) for f in fields)}
    out: dict[str, str] = {}
    for key, value in fields.items():
        if key == "@entity":
            sub = prefix
        elif isinstance(key, int):
            sub = f"{prefix}[{key}]"
        else:
            sub = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten_fields(value, sub))
    return out


def schema_message(fields: dict) -> str:
    flat = flatten_fields(fields)
    parts = [v if k == "@entity" else f"{k}: {v}" for k, v in sorted(flat.items())]
    if len(parts) == 1:
        return f"schema violation ({parts[0]})"
    return f"{len(parts)} schema violations ({'; '.join(parts)})"


def wire_fields(fields: Any) -> Any:
    """Int-keyed dicts become lists with nulls in the gaps, as Kong sends array errors."""
    if not isinstance(fields, dict):
        return fields
    if fields and all(isinstance(k, int) for k in fields):
        out: list[Any] = [None] * (max(fields) + 1)
        for k, v in fields.items():
            out[k] = wire_fields(v)
        return out
    return {str(k): wire_fields(v) for k, v in fields.items()}
