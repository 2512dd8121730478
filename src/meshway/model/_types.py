"""Field types of entity declarations.

Rules:
- `validate(value)` returns the normalized value or raises `FieldError` whose `error` is a
  message (scalars) or a dict keyed by sub-field name or array index (records, arrays, maps).
  Messages are Kong's own wording, so that scripts matching on them keep working.
- `None` reaches `validate` only for non-null values; the caller handles null/required.
- `coerce(value)` turns form-encoded strings into the field's type before validation (Kong's
  `kong/api/arguments.lua` does the same, guided by the schema); it never raises.
- `describe()` gives the field for `GET /schemas/{entity}` and `openapi()` for `/openapi.json`.
"""
from __future__ import annotations

import copy
import math
import uuid
from typing import Any, Callable

Check = Callable[[Any], "str | None"]
MISSING = object()


class FieldError(Exception):
    """A value does not fit its field; `error` is a message or a nested dict of messages."""

    def __init__(self, error: str | dict) -> None:
        super().__init__(error)
        self.error = error


class Field:
    """Base field: null handling, default, `one_of`, extra checks, docs."""

    type_name = "any"
    json_type: str | None = None

    def __init__(self, *, required: bool = False, default: Any = None, one_of: tuple | None = None,
                 checks: tuple[Check, ...] = (), unique: bool = False, auto: str | None = None,
                 description: str = "") -> None:
        self.required = required
        self.default = default
        self.one_of = one_of
        self.checks = checks
        self.unique = unique
        self.auto = auto  # "uuid", "timestamp", "uuid_hex": filled by the system when absent
        self.description = description

    def default_value(self) -> Any:
        return copy.deepcopy(self.default)

    def validate(self, value: Any) -> Any:
        value = self.check_type(value)
        if self.one_of is not None and value not in self.one_of:
            raise FieldError("expected one of: " + ", ".join(str(v) for v in self.one_of))
        for check in self.checks:
            err = check(value)
            if err:
                raise FieldError(err)
        return value

    def check_type(self, value: Any) -> Any:
        return value

    def coerce(self, value: Any) -> Any:
        return value

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type_name}
        if self.required:
            out["required"] = True
        if self.default is not None:
            out["default"] = self.default
        if self.one_of is not None:
            out["one_of"] = list(self.one_of)
        if self.unique:
            out["unique"] = True
        if self.auto:
            out["auto"] = True
        return out

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.json_type} if self.json_type else {}
        if self.one_of is not None:
            out["enum"] = list(self.one_of)
        if self.default is not None:
            out["default"] = self.default
        if self.description:
            out["description"] = self.description
        return out


class String(Field):
    """A string; empty strings are refused as Kong does (`length must be at least 1`)."""

    type_name = json_type = "string"

    def __init__(self, *, len_min: int = 1, len_max: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.len_min, self.len_max = len_min, len_max

    def check_type(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise FieldError("expected a string")
        if len(value) < self.len_min:
            raise FieldError(f"length must be at least {self.len_min}")
        if self.len_max is not None and len(value) > self.len_max:
            raise FieldError(f"length must be at most {self.len_max}")
        return value

    def coerce(self, value: Any) -> Any:
        return value


class Uuid(String):
    """A UUID string, normalized to lower case."""

    def check_type(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise FieldError("expected a string")
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise FieldError("expected a valid UUID") from None


class Integer(Field):
    """An integer, optionally within `between`."""

    type_name = json_type = "integer"

    def __init__(self, *, between: tuple[int, int] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.between = between

    def check_type(self, value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError("expected an integer")
        if self.between and not self.between[0] <= value <= self.between[1]:
            raise FieldError(f"value should be between {self.between[0]} and {self.between[1]}")
        return value

    def coerce(self, value: Any) -> Any:
        return _to_number(value, int)

    def openapi(self) -> dict[str, Any]:
        out = super().openapi()
        if self.between:
            out["minimum"], out["maximum"] = self.between
        return out


class Number(Integer):
    """A number (int or float), optionally within `between`."""

    type_name = json_type = "number"

    def check_type(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise FieldError("expected a number")
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # Kong's JSON writes a whole number as an integer: 1.0 comes back 1
        if self.between and not self.between[0] <= value <= self.between[1]:
            raise FieldError(f"value should be between {self.between[0]} and {self.between[1]}")
        return value

    def coerce(self, value: Any) -> Any:
        return _to_number(value, float)


class Boolean(Field):
    """A boolean; forms may say true/false."""

    type_name = json_type = "boolean"

    def check_type(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise FieldError("expected a boolean")
        return value

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return value


class Array(Field):
    """A list of `elements`; `set=True` removes duplicates (Kong's `set` type)."""

    type_name = "array"
    json_type = "array"

    def __init__(self, elements: Field, *, set: bool = False, len_min: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.elements, self.is_set, self.len_min = elements, set, len_min
        if set:
            self.type_name = "set"

    def check_type(self, value: Any) -> Any:
        if not isinstance(value, list):
            raise FieldError("expected a set" if self.is_set else "expected an array")
        if self.len_min is not None and len(value) < self.len_min:
            raise FieldError(f"length must be at least {self.len_min}")
        out, errors = [], {}
        for i, item in enumerate(value):
            if item is None:  # Kong's elements are required: `tags[]=` or `[null]` is no value
                errors[i] = "required field missing"
                continue
            try:
                item = validate_value(self.elements, item)
            except FieldError as e:
                errors[i] = e.error
                continue
            if not (self.is_set and item in out):
                out.append(item)
        if errors:
            raise FieldError(errors)
        return out

    def coerce(self, value: Any) -> Any:
        if isinstance(value, dict) and value and all(str(k).isdigit() for k in value):
            value = [value[k] for k in sorted(value, key=int)]
        if not isinstance(value, list):
            value = [value]
        return [self.elements.coerce(v) for v in value]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "elements": self.elements.describe()}

    def openapi(self) -> dict[str, Any]:
        return {**super().openapi(), "items": self.elements.openapi()}


class Map(Field):
    """A JSON object with typed keys and values (route headers)."""

    type_name = json_type = "object"

    def __init__(self, keys: Field, values: Field, **kw: Any) -> None:
        super().__init__(**kw)
        self.keys, self.values = keys, values
        self.type_name = "map"

    def check_type(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise FieldError("expected a map")
        out, errors = {}, {}
        for k, v in value.items():
            if v is None:  # as for array elements: stored, a null would stop the config compiling
                errors[k] = "required field missing"
                continue
            try:
                out[self.keys.validate(k)] = validate_value(self.values, v)
            except FieldError as e:
                errors[k] = e.error
        if errors:
            raise FieldError(errors)
        return out

    def coerce(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: self.values.coerce(v) for k, v in value.items()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "keys": self.keys.describe(), "values": self.values.describe()}

    def openapi(self) -> dict[str, Any]:
        return {**super().openapi(), "additionalProperties": self.values.openapi()}


class Record(Field):
    """A nested object with declared sub-fields; defaults fill recursively."""

    type_name = "record"
    json_type = "object"

    def __init__(self, fields: dict[str, Field], **kw: Any) -> None:
        super().__init__(**kw)
        self.fields = fields

    def default_value(self) -> Any:
        if self.default is not None:
            return copy.deepcopy(self.default)
        return {name: f.default_value() for name, f in self.fields.items()}

    def check_type(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise FieldError("expected a record")
        out, errors = {}, {}
        for key in value:
            if key not in self.fields:
                errors[key] = "unknown field"
        for name, field in self.fields.items():
            raw = value[name] if name in value else field.default_value()
            try:
                out[name] = validate_value(field, raw)
            except FieldError as e:
                errors[name] = e.error
        if errors:
            raise FieldError(errors)
        return out

    def coerce(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: self.fields[k].coerce(v) if k in self.fields else v for k, v in value.items()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fields": [{n: f.describe()} for n, f in self.fields.items()]}

    def openapi(self) -> dict[str, Any]:
        props = {n: f.openapi() for n, f in self.fields.items()}
        return {**super().openapi(), "properties": props, "additionalProperties": False}


class Foreign(Field):
    """A reference to another entity: `{"id": uuid}`; `{"name": ...}` is resolved by the store."""

    type_name = "foreign"
    json_type = "object"

    def __init__(self, reference: str, *, on_delete: str = "restrict", **kw: Any) -> None:
        super().__init__(**kw)
        self.reference, self.on_delete = reference, on_delete

    def check_type(self, value: Any) -> Any:
        if isinstance(value, str):  # Kong's declarative files and some scripts write a bare id
            value = {"id": value}
        if not isinstance(value, dict):
            raise FieldError("expected a record")
        extra = set(value) - {"id", "name", "username"}
        if extra:
            raise FieldError({k: "unknown field" for k in extra})
        if "id" in value:
            try:
                return {"id": Uuid().check_type(value["id"])}
            except FieldError as e:
                raise FieldError({"id": e.error}) from None
        if len(value) == 1:
            return dict(value)
        raise FieldError({"id": "required field missing"})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "reference": self.reference, "on_delete": self.on_delete}

    def openapi(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}, "nullable": True}


class Json(Field):
    """Free-form JSON object (a plugin's config, validated by the plugin's own schema)."""

    type_name = "record"
    json_type = "object"

    def check_type(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise FieldError("expected a record")
        return value


def validate_value(field: Field, value: Any) -> Any:
    """Validate one value, applying Kong's null rules."""
    if value is None:
        if field.required:
            raise FieldError("required field missing")
        return None
    return field.validate(value)


def _to_number(value: Any, kind: type) -> Any:
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    if kind is int and number.is_integer() and "." not in value:
        return int(number)
    return int(number) if number.is_integer() and kind is int else number
