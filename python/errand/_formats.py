"""The JSON forms of the standard library's value types and of records (not
public): one rule per type for the three places that need it, the JSON
Schema a model reads (errand._schema), the JSON the SDK sends for an
argument or a result (errand._jsonable.to_json) and what a worker builds
back from it (errand._coerce).

| type              | JSON                                  | schema                        |
| ----------------- | ------------------------------------- | ----------------------------- |
| datetime          | "2024-05-01T12:30:00+00:00" (ISO 8601)| string, format date-time      |
| date              | "2024-05-01"                          | string, format date           |
| time              | "12:30:00"                            | string, format time           |
| timedelta         | seconds, a number (90, 0.5)           | number                        |
| UUID              | "12345678-1234-5678-1234-567812345678"| string, format uuid           |
| Decimal           | a number when a float carries it      | number or string              |
|                   | exactly ("12.50" -> 12.5), else text  |                               |
| Path (PurePath)   | "dir/file.txt"                        | string, format path           |

A worker reads ISO 8601 as Python's `fromisoformat` does (a trailing "Z" is
UTC on every Python), a Decimal from a number (by its shortest text: 0.1 is
Decimal("0.1")) or from text. A timedelta is seconds only, not an ISO 8601
duration: one form is easier for a model to get right, and the server
checks arguments against the schema.

Records: a dataclass (its `init` fields; required: those without a default)
and a TypedDict (its keys; required: `__required_keys__`) are JSON objects of
their fields (`record`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import functools
import pathlib
import typing
import uuid
from typing import Any, Callable, Optional

__all__ = ["Format", "Record", "format_of", "format_of_value", "record"]


@dataclasses.dataclass(frozen=True)
class Format:
    """One value type's JSON form."""

    kind: type
    schema: dict[str, Any]
    #: The JSON value of an instance.
    dump: Callable[[Any], Any]
    #: An instance of `tp` (the hint: `kind` or a subclass) from a JSON value;
    #: ValueError naming the value when it is not one.
    load: Callable[[Any, Any], Any]


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not {what} (a JSON string)")
    return value


def _iso(tp: Any, value: Any, what: str) -> Any:
    text = _text(value, f"an ISO 8601 {what}")
    if text[-1:] in ("Z", "z") and tp is not _dt.date:
        text = text[:-1] + "+00:00"  # fromisoformat takes "Z" from Python 3.11 only
    try:
        return tp.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 {what}") from None


def _load_timedelta(tp: Any, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a duration in seconds (a JSON number)")
    try:
        return tp(seconds=value)
    except OverflowError:
        raise ValueError(f"{value!r} seconds is too long a duration") from None


def _dump_timedelta(value: _dt.timedelta) -> Any:
    seconds = value.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


def _load_decimal(tp: Any, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a decimal number (a JSON number or string)")
    try:
        # A float by its shortest text: 0.1 is Decimal("0.1"), not 0.1000000000000000055...
        return tp(repr(value) if isinstance(value, float) else value)
    except decimal.InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None


def _dump_decimal(value: decimal.Decimal) -> Any:
    if not value.is_finite():
        return float(value)  # refused as a NaN or an infinity where it is sent
    if value == value.to_integral_value():
        return int(value)
    number = float(value)
    return number if decimal.Decimal(repr(number)) == value else str(value)


def _load(what: str) -> Callable[[Any, Any], Any]:
    def load(tp: Any, value: Any) -> Any:
        try:
            return tp(_text(value, what))
        except ValueError:
            raise ValueError(f"{value!r} is not {what}") from None

    return load


#: In lookup order: datetime before date, its base.
_FORMATS: tuple[Format, ...] = (
    Format(
        _dt.datetime,
        {"type": "string", "format": "date-time"},
        lambda v: v.isoformat(),
        lambda tp, v: _iso(tp, v, "date-time"),
    ),
    Format(
        _dt.date,
        {"type": "string", "format": "date"},
        lambda v: v.isoformat(),
        lambda tp, v: _iso(tp, v, "date"),
    ),
    Format(
        _dt.time,
        {"type": "string", "format": "time"},
        lambda v: v.isoformat(),
        lambda tp, v: _iso(tp, v, "time"),
    ),
    Format(
        _dt.timedelta,
        {"type": "number", "description": "a duration in seconds"},
        _dump_timedelta,
        _load_timedelta,
    ),
    Format(uuid.UUID, {"type": "string", "format": "uuid"}, str, _load("a UUID")),
    Format(decimal.Decimal, {"type": ["number", "string"]}, _dump_decimal, _load_decimal),
    Format(
        pathlib.PurePath,
        {"type": "string", "format": "path"},
        str,
        _load("a path (a JSON string)"),
    ),
)


def format_of(tp: Any) -> Optional[Format]:
    """The `Format` of a type hint that is one of these classes (or a subclass)."""
    if not isinstance(tp, type):
        return None
    for fmt in _FORMATS:
        if issubclass(tp, fmt.kind):
            return fmt
    return None


def format_of_value(value: Any) -> Optional[Format]:
    """The `Format` of a value, or None."""
    return format_of(type(value))


# -- records ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Record:
    """A dataclass or TypedDict as a JSON object."""

    cls: type
    #: Field name -> type hint (Required/NotRequired taken off).
    fields: dict[str, Any]
    required: tuple[str, ...]
    #: Field name -> default value (dataclass fields with a plain default).
    defaults: dict[str, Any]
    #: Whether a value is built by calling `cls` (a dataclass), else a dict.
    construct: bool

    def build(self, value: Any, item: Callable[[Any, Any], Any]) -> Any:
        """The record from a JSON object, each field through `item(hint,
        value)`; ValueError for what is not an object, an unknown field (of a
        dataclass) or a missing required one."""
        name = self.cls.__name__
        if not isinstance(value, dict):
            raise ValueError(f"{_short(value)} is not a {name} (a JSON object of its fields)")
        missing = [f for f in self.required if f not in value]
        if missing:
            raise ValueError(f"{name} needs the field(s) {', '.join(map(repr, missing))}")
        unknown = [k for k in value if k not in self.fields]
        if unknown and self.construct:
            raise ValueError(f"{name} has no field {unknown[0]!r}")
        made = {k: item(self.fields[k], v) if k in self.fields else v for k, v in value.items()}
        return self.cls(**made) if self.construct else made


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_QUALIFIERS = frozenset({"Required", "NotRequired", "ReadOnly"})


def _unqualified(tp: Any) -> Any:
    while getattr(typing.get_origin(tp), "_name", None) in _QUALIFIERS:
        tp = typing.get_args(tp)[0]
    return tp


def _is_typeddict(tp: Any) -> bool:
    return (
        isinstance(tp, type)
        and issubclass(tp, dict)
        and hasattr(tp, "__required_keys__")
        and hasattr(tp, "__annotations__")
    )


def record(tp: Any) -> Optional[Record]:
    """The `Record` of a dataclass or TypedDict class, else None; ValueError
    when its field hints cannot be resolved."""
    if not isinstance(tp, type):
        return None
    if not (dataclasses.is_dataclass(tp) or _is_typeddict(tp)):
        return None
    return _record(tp)


@functools.lru_cache(maxsize=512)
def _record(tp: type) -> Record:
    try:
        hints = typing.get_type_hints(tp, include_extras=True)
    except Exception as exc:
        raise ValueError(f"cannot resolve the type hints of {tp.__name__}: {exc}") from exc
    if dataclasses.is_dataclass(tp):
        fields = [f for f in dataclasses.fields(tp) if f.init]
        defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
        required = tuple(
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        types = {f.name: hints.get(f.name, Any) for f in fields}
        return Record(tp, types, required, defaults, construct=True)
    keys: frozenset[str] = getattr(tp, "__required_keys__", frozenset())
    # Under `from __future__ import annotations` the class could not see a
    # NotRequired[...] (a string then): its resolved hint says.
    qualified = {k: getattr(typing.get_origin(v), "_name", None) for k, v in hints.items()}
    required = tuple(
        k
        for k in hints
        if qualified[k] == "Required" or (k in keys and qualified[k] != "NotRequired")
    )
    types = {k: _unqualified(v) for k, v in hints.items()}
    return Record(tp, types, required, {}, construct=False)
