"""Tool arguments as their type hints say (not public): what a worker builds
from the JSON it is given before it calls a tool (`ToolDef.bind`).

JSON has objects, arrays, strings, numbers, booleans and null; `coerce`
builds what a hint names from them, at every level of it, and `plain` says
which hints leave every value as it is (so that a call need not walk it).
Object keys are text: a key is read back as its hint says (`_key`), the
inverse of how the SDK writes it (errand._jsonable.key_text). A Union of
several types takes the member pydantic's "smart" union mode would
(`_smart`), and leaves a value that fits none as it is.
"""

from __future__ import annotations

import enum
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

from errand._formats import format_of, record
from errand._jsonable import key_text

__all__ = ["UNION_TYPES", "coerce", "plain", "pydantic_model"]

#: The origins of `Union[...]`, `Optional[...]` and (3.10+) `A | B`.
UNION_TYPES: tuple[Any, ...] = (Union,)
if sys.version_info >= (3, 10):
    UNION_TYPES = (Union, types.UnionType)


def pydantic_model(tp: Any) -> Any:
    """`tp` when it is a pydantic model class (pydantic installed), else None."""
    base = sys.modules.get("pydantic")
    if base is None:
        try:
            import pydantic as base
        except ImportError:
            return None
    model_cls = getattr(base, "BaseModel", None)
    if model_cls is not None and isinstance(tp, type) and issubclass(tp, model_cls):
        return tp
    return None


_NONE = type(None)
_PLAIN: tuple[Any, ...] = (Any, str, int, float, bool, bytes, dict, list, _NONE, object)


def plain(tp: Any) -> bool:
    """Whether `coerce(tp, v)` is `v` for every `v`: nothing to build
    anywhere in `tp` (no pydantic model, Enum, tuple or set, no dict key
    but text)."""
    if any(tp is p for p in _PLAIN):
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return not any(isinstance(a, enum.Enum) for a in args)
    if origin is typing.Annotated:
        return plain(args[0])
    if origin in UNION_TYPES:
        return all(plain(a) for a in args)
    if origin in (list, Sequence):
        return not args or plain(args[0])
    if origin in (dict, Mapping):
        return len(args) != 2 or (_plain_key(args[0]) and plain(args[1]))
    return False


def _plain_key(tp: Any) -> bool:
    """Whether `_key(tp, k)` is `k` for every key text `k`."""
    if tp is Any or tp is str or tp is object:
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _plain_key(args[0])
    if origin is typing.Literal:
        return all(type(a) is str for a in args)
    if origin in UNION_TYPES:
        return str in args or all(_plain_key(a) for a in args)
    return False


def coerce(tp: Any, value: Any) -> Any:
    """Build what `tp` names from its JSON form, at every level of it: Enum
    members, pydantic models, dataclasses and TypedDicts (from objects),
    the value types of errand._formats (datetime, date, time, timedelta,
    UUID, Decimal, Path), tuples and sets (from arrays), Literal Enum
    members, inside list/Sequence, dict/Mapping (keys and values: a key from
    its text, see `_key`), tuple, set, Optional, Union and Annotated. A
    Union takes the first member the value fits exactly (an int for `int |
    str`), else the first it fits in the members' order (`_smart`), as
    pydantic's "smart" union mode does. A value that does not fit is
    returned as it is (or refused by the Enum, the model, the record or the
    value type: ValueError or TypeError; in a Union of several, it is left
    as it is)."""
    if value is None:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return coerce(args[0], value)
    if origin in UNION_TYPES:
        members = [a for a in args if a is not _NONE]
        if len(members) == 1:
            return coerce(members[0], value)
        try:
            return _smart(members, value)
        except _Misfit:
            return value
    if origin is typing.Literal:
        try:
            return _literal(args, value)
        except _Misfit:
            return value
    if isinstance(value, list):
        if origin in (list, Sequence):
            return [coerce(args[0], v) for v in value] if args else value
        if origin is tuple or tp is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(coerce(args[0], v) for v in value)
            if args and args != ((),) and len(args) == len(value):
                return tuple(coerce(a, v) for a, v in zip(args, value))
            return tuple(value)
        if origin in (set, frozenset) or tp in (set, frozenset):
            kind = origin or tp
            return kind(coerce(args[0], v) for v in value) if args else kind(value)
    if origin in (dict, Mapping) and len(args) == 2 and isinstance(value, dict):
        key, item = args
        return {_key(key, k): coerce(item, v) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    fmt = format_of(tp)
    if fmt is not None:
        return fmt.load(tp, value)  # ValueError naming a value that is not one
    model = pydantic_model(tp)
    if model is not None and isinstance(value, dict):
        return _validate(model, value)
    fields = record(tp)
    if fields is not None:
        return fields.build(value, coerce)
    return value


class _Misfit(Exception):
    """The value does not fit the type (see `_fit`)."""


def _smart(members: Sequence[Any], value: Any) -> Any:
    """`value` as the first of `members` it fits exactly (its JSON type is
    the member: `type(value) is int` for int, a list for list[...], a
    Literal's own value), else as the first it fits (`_fit`), in order.
    _Misfit when it fits none."""
    exact = [m for m in members if _exact(m, value)]
    for member in [*exact, *(m for m in members if m not in exact)]:
        try:
            return _fit(member, value)
        except _Misfit:
            continue
    raise _Misfit


def _exact(tp: Any, value: Any) -> bool:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if tp in (str, int, float, bool, _NONE):
        return type(value) is tp
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return any(type(a) is type(value) and a == value for a in typing.get_args(tp))
    return (origin is list or tp is list) and type(value) is list


def _fit(tp: Any, value: Any) -> Any:
    """`value` built as `tp` says, as `coerce` builds it, when it fits `tp`
    all through (an int for int, not a bool; a float or an int for float;
    an array whose items all fit for list[...], ...); else _Misfit."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _fit(args[0], value)
    if origin in UNION_TYPES:
        return _smart(args, value)
    if value is None or tp is None or tp is _NONE:
        if value is None and (tp is None or tp is _NONE):
            return None
        raise _Misfit
    if origin is typing.Literal:
        return _literal(args, value)
    if tp is int or tp is float:
        kinds = (int, float) if tp is float else (int,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise _Misfit
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except (ValueError, TypeError):
            raise _Misfit from None
    if origin in (list, Sequence, tuple, set, frozenset) or tp in (tuple, set, frozenset):
        return _fit_array(origin or tp, args, value)
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise _Misfit
        if len(args) != 2:
            return value
        return {_key_fit(args[0], k): _fit(args[1], v) for k, v in value.items()}
    fmt = format_of(tp)
    if fmt is not None:
        try:
            return fmt.load(tp, value)
        except (ValueError, TypeError):
            raise _Misfit from None
    fields = record(tp)
    if fields is not None and pydantic_model(tp) is None:
        try:
            return fields.build(value, _fit)
        except (ValueError, TypeError):
            raise _Misfit from None
    model = pydantic_model(tp)
    if model is not None:
        if not isinstance(value, dict):
            raise _Misfit
        try:
            return _validate(model, value)
        except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
            raise _Misfit from None
    if origin is None and isinstance(tp, type) and not isinstance(value, tp):
        raise _Misfit  # str, bool, list, dict, ...
    return value  # a hint this does not know: taken as it is


def _fit_array(kind: Any, args: tuple[Any, ...], value: Any) -> Any:
    """`_fit` for list/Sequence, tuple, set and frozenset hints: from an array."""
    if not isinstance(value, list):
        raise _Misfit
    if kind in (list, Sequence):
        return [_fit(args[0], v) for v in value] if args else value
    if kind is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_fit(args[0], v) for v in value)
        if args and args != ((),):
            if len(args) != len(value):
                raise _Misfit
            return tuple(_fit(a, v) for a, v in zip(args, value))
        return tuple(value)
    try:
        return kind(_fit(args[0], v) for v in value) if args else kind(value)
    except TypeError:  # an item that cannot be in a set
        raise _Misfit from None


def _literal(args: tuple[Any, ...], value: Any) -> Any:
    """The Literal's value `value` is: one of its own (of the same type), or
    an Enum member of it whose value it is; else _Misfit."""
    for arg in args:
        if type(arg) is type(value) and arg == value:
            return arg
    for arg in args:
        if isinstance(arg, enum.Enum) and type(arg.value) is type(value) and arg.value == value:
            return arg
    raise _Misfit


def _validate(model: Any, value: dict[str, Any]) -> Any:
    validate = getattr(model, "model_validate", None) or model.parse_obj
    return validate(value)


# -- dict keys ------------------------------------------------------------------
#
# JSON object keys are text: an int key arrives as "1", a bool as "true", an
# Enum member as its value's text (errand._jsonable.key_text writes them).

_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_BOOLS = {"true": True, "false": False}


def _key(tp: Any, key: str) -> Any:
    """A dict key as its hint `tp` says, from its text: an Enum member by
    its value, an int, float or bool from how JSON writes it, and so on
    (`_key_fit`). A key that fits no such reading is left as it is, but for
    an Enum: ValueError, as for an Enum value."""
    try:
        return _key_fit(tp, key)
    except _Misfit:
        pass
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(key)  # ValueError: "'green' is not a valid Color"
    return key


def _key_fit(tp: Any, key: str) -> Any:
    """`_key` when the key fits `tp` (the inverse of `key_text`); else _Misfit."""
    if tp is Any or tp is object or tp is str:
        return key
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _key_fit(args[0], key)
    if origin in UNION_TYPES:
        if str in args:
            return key  # text fits text exactly
        for member in args:
            try:
                return _key_fit(member, key)
            except _Misfit:
                continue
        raise _Misfit
    if origin is typing.Literal:
        for arg in args:
            if _written(arg) == key:
                return arg
        raise _Misfit
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(key)
        except ValueError:
            pass
        for member in tp:
            if _written(member) == key:
                return member
        raise _Misfit
    if tp is bool and key in _BOOLS:
        return _BOOLS[key]
    if tp is int and _INT.fullmatch(key):
        return int(key)
    if tp is float and _FLOAT.fullmatch(key):
        return float(key)
    if (tp is None or tp is _NONE) and key == "null":
        return None
    fmt = format_of(tp)
    if fmt is not None:  # the inverse of key_text: its JSON, as text
        for written in (key, *_number(key)):
            try:
                return fmt.load(tp, written)
            except (ValueError, TypeError):
                continue
    raise _Misfit


def _number(key: str) -> tuple[Any, ...]:
    """The number a key's text writes, if it writes one."""
    if _INT.fullmatch(key):
        return (int(key),)
    return (float(key),) if _FLOAT.fullmatch(key) else ()


def _written(value: Any) -> Optional[str]:
    """How JSON writes `value` as a key, or None when it cannot."""
    try:
        return key_text(value)
    except (TypeError, ValueError):
        return None
