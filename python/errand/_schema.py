"""JSON Schema from Python type hints (not public): what `@async_tool` tells
the model a tool takes (`schema_for_function`), one hint at a time
(`schema_for_type`). The worker builds the same types back from the JSON
(errand._coerce); the value types and records of errand._formats have one
rule each for both.
"""

from __future__ import annotations

import contextvars
import enum
import inspect
import json
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from errand._coerce import UNION_TYPES, pydantic_model
from errand._formats import Record, format_of, record
from errand._jsonable import plain_json

__all__ = ["schema_for_function", "schema_for_type"]


def schema_for_function(fn: Callable[..., Any]) -> dict[str, Any]:
    """JSON Schema of the arguments object of `fn`, from its signature and hints."""
    sig = inspect.signature(fn)
    hints = _hints(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    defs: dict[str, Any] = {}
    extra_allowed = False
    for pname, param in sig.parameters.items():
        if param.kind == param.VAR_KEYWORD:
            extra_allowed = True
            continue
        if param.kind == param.VAR_POSITIONAL:
            continue
        if param.kind == param.POSITIONAL_ONLY:
            raise ValueError(f"parameter {pname!r} is positional-only; tools take keywords")
        prop = _schema(hints.get(pname, Any), defs)
        if param.default is inspect.Parameter.empty:
            required.append(pname)
        else:
            default = _json_default(param.default)
            if default is not _NO_DEFAULT:
                prop = {**prop, "default": default}
        properties[pname] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if not extra_allowed:
        schema["additionalProperties"] = False
    if defs:
        schema["$defs"] = defs
    return schema


def schema_for_type(tp: Any) -> dict[str, Any]:
    """JSON Schema of one Python type hint (with `$defs` when pydantic models need them)."""
    defs: dict[str, Any] = {}
    schema = _schema(tp, defs)
    if defs:
        schema = {**schema, "$defs": defs}
    return schema


_NO_DEFAULT = object()


def _json_default(value: Any) -> Any:
    """A parameter's default as the schema's "default" (in the JSON form a
    submit sends: an Enum by its value, a date as ISO 8601 text, ...), or
    _NO_DEFAULT when JSON cannot carry it (an object, a NaN or an
    infinity): left out."""
    try:
        value = plain_json(value, "default")
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return _NO_DEFAULT
    return value


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise ValueError(f"cannot resolve the type hints of {fn!r}: {exc}") from exc


def _accepts_var_keyword(sig: inspect.Signature) -> bool:
    return any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


_SIMPLE: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if tp is Any or tp is inspect.Parameter.empty or tp is object:
        return {}
    if tp is None:
        return {"type": "null"}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        base = _schema(args[0], defs)
        notes = [a for a in args[1:] if isinstance(a, str)]
        if notes:
            text = " ".join(notes)
            # The type's own note (a timedelta's unit, a tuple's order) stays:
            # the model needs both.
            own = base.get("description")
            base = {**base, "description": f"{text} ({own})" if own else text}
        return base
    if tp in _SIMPLE:
        return {"type": _SIMPLE[tp]}
    if origin in UNION_TYPES:
        members = [a for a in args if a is not type(None)]
        nullable = len(members) != len(args)
        subs = [_schema(a, defs) for a in members]
        simple = all(set(s) == {"type"} and isinstance(s["type"], str) for s in subs)
        if simple:
            names = [s["type"] for s in subs] + (["null"] if nullable else [])
            return {"type": names[0] if len(names) == 1 else names}
        if nullable:
            subs.append({"type": "null"})
        return subs[0] if len(subs) == 1 else {"anyOf": subs}
    if origin is typing.Literal:
        values = [v.value if isinstance(v, enum.Enum) else v for v in args]
        out: dict[str, Any] = {"enum": values}
        kinds = {_SIMPLE.get(type(v)) for v in values}
        if len(kinds) == 1 and None not in kinds:
            out = {"type": kinds.pop(), **out}
        return out
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [m.value for m in tp]
        out = {"enum": values}
        kinds = {_SIMPLE.get(type(v)) for v in values}
        if len(kinds) == 1 and None not in kinds:
            out = {"type": kinds.pop(), **out}
        return out
    if origin in (list, set, frozenset, Sequence) or tp in (list, set, frozenset):
        out = {"type": "array"}
        if args:
            out["items"] = _schema(args[0], defs)
        if origin in (set, frozenset) or tp in (set, frozenset):
            out["uniqueItems"] = True
        return out
    if origin is tuple or tp is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema(args[0], defs)}
        if args:
            # Not `prefixItems`: several model providers reject it. The items
            # may be any member type; the description gives their order.
            items = [_schema(a, defs) for a in args]
            unique = [i for n, i in enumerate(items) if i not in items[:n]]
            simple = all(set(i) == {"type"} and isinstance(i["type"], str) for i in unique)
            if len(unique) == 1:
                member: dict[str, Any] = unique[0]
            elif simple:
                member = {"type": [i["type"] for i in unique]}
            else:
                member = {"anyOf": unique}
            order = ", ".join(str(i.get("type", "any")) for i in items)
            return {
                "type": "array",
                "items": member,
                "minItems": len(items),
                "maxItems": len(items),
                "description": f"a tuple, in this order: {order}",
            }
        return {"type": "array"}
    if origin in (dict, Mapping) or tp is dict:
        out = {"type": "object"}
        if len(args) == 2 and args[1] is not Any:
            out["additionalProperties"] = _schema(args[1], defs)
        return out
    fmt = format_of(tp)
    if fmt is not None:
        return dict(fmt.schema)
    model = pydantic_model(tp)
    if model is not None:
        return _pydantic_schema(model, defs)
    fields = record(tp)
    if fields is not None:
        return _record_schema(fields, defs)
    raise ValueError(
        f"no JSON Schema for the type {tp!r}: use str/int/float/bool/list/dict/tuple/set/"
        "Optional/Literal/Enum, datetime/date/time/timedelta/UUID/Decimal/Path, a "
        "dataclass, a TypedDict or a pydantic model, or pass schema= to @async_tool"
    )


#: The records whose schemas are being made, outermost first (a record that
#: holds itself would never end).
_MAKING: contextvars.ContextVar[tuple[type, ...]] = contextvars.ContextVar(
    "errand_schema_records", default=()
)


def _record_schema(fields: Record, defs: dict[str, Any]) -> dict[str, Any]:
    """A dataclass or TypedDict: an object of its fields, the required ones
    those without a default; no other keys."""
    making = _MAKING.get()
    if fields.cls in making:
        raise ValueError(
            f"{fields.cls.__name__} holds itself: no inline JSON Schema for it; use a "
            "pydantic model, or pass schema= to @async_tool"
        )
    token = _MAKING.set((*making, fields.cls))
    try:
        properties: dict[str, Any] = {}
        for name, hint in fields.fields.items():
            prop = _schema(hint, defs)
            if name in fields.defaults:
                default = _json_default(fields.defaults[name])
                if default is not _NO_DEFAULT:
                    prop = {**prop, "default": default}
            properties[name] = prop
    finally:
        _MAKING.reset(token)
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if fields.required:
        out["required"] = list(fields.required)
    out["additionalProperties"] = False
    return out


def _pydantic_schema(model: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if hasattr(model, "model_json_schema"):  # pydantic 2
        schema: dict[str, Any] = dict(model.model_json_schema())
    else:  # pydantic 1
        schema = dict(model.schema(ref_template="#/$defs/{model}"))
        schema["$defs"] = schema.pop("definitions", {})
    for key, value in schema.pop("$defs", {}).items():
        defs.setdefault(key, value)
    return schema
