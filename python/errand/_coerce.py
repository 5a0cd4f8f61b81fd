"""Tool arguments as their type hints say (not public): what a worker builds
from the JSON it is given before it calls a tool (`ToolDef.bind`).

JSON has objects, arrays, strings, numbers, booleans and null; `coerce`
builds what a hint names from them, at every level of it, and `plain` says
which hints leave every value as it is (so that a call need not walk it).
"""

from __future__ import annotations

import enum
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Union

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


_PLAIN: tuple[Any, ...] = (Any, str, int, float, bool, bytes, dict, list, type(None), object)


def plain(tp: Any) -> bool:
    """Whether `coerce(tp, v)` is `v` for every `v`: nothing to build
    anywhere in `tp` (no pydantic model, Enum, tuple or set)."""
    if any(tp is p for p in _PLAIN):
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return True
    if origin is typing.Annotated:
        return plain(args[0])
    if origin in UNION_TYPES:
        members = [a for a in args if a is not type(None)]
        return len(members) != 1 or plain(members[0])
    if origin in (list, Sequence):
        return not args or plain(args[0])
    if origin in (dict, Mapping):
        return all(plain(a) for a in args)
    return False


def coerce(tp: Any, value: Any) -> Any:
    """Build what `tp` names from its JSON form, at every level of it: Enum
    members, pydantic models, tuples and sets (from arrays), inside
    list/Sequence, dict/Mapping (keys and values), tuple, set, Optional and
    Annotated. A value that does not fit is returned as it is (or refused by
    the Enum or the model: ValueError)."""
    if value is None:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return coerce(args[0], value)
    if origin in UNION_TYPES:
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return coerce(members[0], value)
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
        return {coerce(key, k): coerce(item, v) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    model = pydantic_model(tp)
    if model is not None and isinstance(value, dict):
        validate = getattr(model, "model_validate", None) or model.parse_obj
        return validate(value)
    return value
