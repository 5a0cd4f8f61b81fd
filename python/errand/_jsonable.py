"""Values as JSON texts (not public): what `json.dumps` does not know, and
what JSON cannot carry.

JSON object keys are strings: `json.dumps` writes str, int, float, bool and
None keys as text ("1", "0.5", "true", "null") and refuses any other key.
`plain_json` also writes an Enum key as its value (the worker's argument
coercion reads a key back as its hint says: errand._coerce), and refuses a
key JSON cannot carry, or two keys it would write alike, naming where.
`encode` is the one way the SDK makes the JSON it sends.

Every JSON text the SDK sends is made with `allow_nan=False`: JSON has no
NaN or Infinity (`json.dumps` would write the bare words, which the server
refuses as "not valid JSON at line 1 column 1"), so such a value is refused
where it is made, with a ValueError that says where it is (`dumps`,
`not_finite`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any, Callable, Optional

from errand._formats import format_of_value

__all__ = ["dumps", "encode", "key_text", "not_finite", "plain_json", "to_json"]

Default = Optional[Callable[[Any], Any]]


def dumps(value: Any, what: str, root: str = "", **options: Any) -> str:
    """`json.dumps(value, allow_nan=False, **options)`; for a NaN or an
    infinity, a ValueError that names it (see `not_finite`)."""
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError as exc:
        found = not_finite(value, what, root, options.get("default"))
        if found is None:
            raise
        raise ValueError(found) from exc


def not_finite(value: Any, what: str, root: str = "", default: Default = None) -> Optional[str]:
    """Where `value` holds a NaN or an infinity, said for a person: "`what`
    `root`['key'][2] is nan: ..." (with an empty `root`, the first key is
    named bare, as for arguments: "argument x['y'] is inf"); None when it
    holds none (or cannot be walked: a cycle, or past the recursion limit).
    `default` is the `json.dumps` hook that turns other objects into JSON."""
    try:
        found = _find(value, root, default, top=True)
    except Exception:  # RecursionError included
        return None
    if found is None:
        return None
    path, number = found
    place = f"{what} {path}" if path else what
    return (
        f"{place} is {number!r}: JSON has no NaN or Infinity (the server would refuse the "
        "text); send None, a string or a finite number instead"
    )


def _find(
    value: Any, path: str, default: Default, top: bool = False
) -> Optional[tuple[str, float]]:
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if value is None or isinstance(value, (str, int)):
        return None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    elif default is not None:
        return _find(default(value), path, default)
    else:
        return None
    for key, item in items:
        inner = str(key) if top and not path and isinstance(value, dict) else f"{path}[{key!r}]"
        found = _find(item, inner, default)
        if found is not None:
            return found
    return None


class NotUTF8(TypeError):
    """Bytes that JSON cannot carry as text: not UTF-8."""


def to_json(value: Any) -> Any:
    """`json.dumps(default=...)` for pydantic models, dataclasses, enums, sets,
    UTF-8 bytes, and the value types of errand._formats (datetime, date and
    time as ISO 8601 text, timedelta as seconds, UUID and Path as text, a
    Decimal as a number, or as text when a float would lose its digits);
    raises TypeError for anything else (NotUTF8 for other bytes)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic 2 models
        return dump(mode="json")
    if callable(getattr(value, "json", None)) and hasattr(value, "__fields__"):  # pydantic 1
        return json.loads(value.json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    fmt = format_of_value(value)
    if fmt is not None:
        return fmt.dump(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            # Replacing the bad bytes would change the value unseen. Said for
            # any place: `plain_json` names it (an argument, a result, a detail).
            raise NotUTF8(
                f"bytes that are not UTF-8 text ({value[:32]!r}"
                f"{'...' if len(value) > 32 else ''}): decode them, or encode them as base64"
            ) from None
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def key_text(key: Any) -> str:
    """The text JSON writes for a dict key: a str as it is, an int in decimal,
    a float as `repr` writes it, true, false or null; an Enum member as its
    value would be, a value type of errand._formats as its JSON (a date as
    "2024-05-01"). TypeError for any other key, ValueError for a NaN or an
    infinity."""
    while isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        if not math.isfinite(key):
            raise ValueError(f"a key that is {key!r}: JSON has no NaN or Infinity")
        return float.__repr__(key)
    if key is None:
        return "null"
    fmt = format_of_value(key)
    if fmt is not None:  # a date as its ISO 8601 text, a UUID as its text, ...
        return key_text(fmt.dump(key))
    raise TypeError(f"a key of type {type(key).__name__} ({key!r})")


def encode(value: Any, what: str, root: str = "", *, compact: bool = False) -> str:
    """`value` as JSON text: the one encoder of what the SDK sends as JSON
    (a call's arguments, a tool's result, a progress detail).

    The text of `plain_json(value)`: Enum keys and values as their values,
    what `to_json` knows as JSON; a TypeError or ValueError that names where
    the problem is, from `what` and `root` as `not_finite` names it
    ("argument x['y']", "progress detail['v']"), for a key or a value JSON
    cannot carry, two keys it would write alike, a NaN or an infinity
    (`dumps`). Text as it is (`ensure_ascii=False`); `compact` leaves out
    the spaces after "," and ":".

    A result may be megabytes, and `plain_json` walks and copies it in
    Python: json's C encoder goes first, and its text is kept when it is
    the same text, that is when every dict in `value` is keyed by str only
    (`_str_keys`; what `to_json` makes is made plain on the way, by
    `_fast_default`). Anything else (an Enum or int key, a refusal to name)
    goes through `plain_json`. Other errors (a RecursionError, a
    `model_dump` that raises) pass through as json's encoder raised them.
    """
    separators = (",", ":") if compact else None
    try:
        text: Optional[str] = _FAST[compact].encode(value)
    except (TypeError, ValueError):
        text = None  # said below, naming where
    if text is not None and _str_keys(value):
        return text
    plain = plain_json(value, what, root)
    return dumps(plain, what, root, ensure_ascii=False, separators=separators)


def _fast_default(value: Any) -> Any:
    """`to_json(value)` made plain, for json's encoder in `encode`; TypeError
    or ValueError (as `plain_json` raises them) sends `encode` the slow way."""
    return plain_json(to_json(value), "value")


#: json's C encoders for `encode`, spaced (False) and compact (True).
_FAST = {
    compact: json.JSONEncoder(
        default=_fast_default,
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":") if compact else None,
    )
    for compact in (False, True)
}
_CONTAINERS = (dict, list, tuple)
_STR = frozenset({str})


def _str_keys(value: Any) -> bool:
    """Whether every dict in `value` (through dicts, lists and tuples; not
    cyclic: json's encoder checked) is keyed by str only: then json writes
    each key as `key_text` does, and no two alike. Iterative: no depth limit."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        if isinstance(item, dict):
            if not set(map(type, item)) <= _STR:
                return False
            item = item.values()
        elif not isinstance(item, (list, tuple)):
            continue
        extend([v for v in item if isinstance(v, _CONTAINERS)])
    return True


def plain_json(
    value: Any, what: str, root: str = "", default: Callable[[Any], Any] = to_json
) -> Any:
    """`value` as the plain data JSON carries (dicts with str keys, lists,
    str, int, float, bool, None): what `json.loads(json.dumps(value,
    default=default))` would give, and for Enum keys too (see `key_text`).

    A problem is named from `what` and `root` on, as `not_finite` names it
    ("`what` `root`['y'][0] ...", or with an empty `root` "`what` y[0] ...":
    an arguments object's keys are argument names). TypeError for a key
    or a value JSON cannot carry; ValueError for two keys of one dict that
    JSON writes alike, or for a value that refers to itself. (A NaN or an
    infinity is left for `dumps` to refuse.)
    """
    try:
        return _plain(value, root, default, set(), top=True)
    except RecursionError:
        nested = (
            f"{what} {root} is nested too deeply (or refers to itself)"
            if root
            else f"{what}s are nested too deeply (or refer to themselves)"
        )
        raise ValueError(nested) from None
    except _Refused as refused:
        place = f"{what} {refused.path}" if refused.path else what
        raise refused.kind(f"{place} {refused.problem}") from None


class _Refused(Exception):
    """What `plain_json` refuses, and where."""

    def __init__(self, kind: type[Exception], path: str, problem: str) -> None:
        super().__init__(problem)
        self.kind = kind
        self.path = path
        self.problem = problem


def _plain(
    value: Any, path: str, default: Callable[[Any], Any], active: set[int], top: bool = False
) -> Any:
    while isinstance(value, enum.Enum):
        value = value.value
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, str):  # subclasses, as json writes them
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if not isinstance(value, (dict, list, tuple)):
        try:
            made = default(value)
        except TypeError as exc:
            raise _Refused(TypeError, path, f"is not JSON: {exc}") from None
        return _plain(made, path, default, active)
    if id(value) in active:
        raise _Refused(ValueError, path, "refers to itself (a circular reference)")
    active.add(id(value))
    try:
        if not isinstance(value, dict):
            return [_plain(v, f"{path}[{i}]", default, active) for i, v in enumerate(value)]
        out: dict[str, Any] = {}
        keys: dict[str, Any] = {}
        for key, item in value.items():
            text = _key(key, path, keys)
            inner = text if top and not path else f"{path}[{text!r}]"
            out[text] = _plain(item, inner, default, active)
        return out
    finally:
        active.discard(id(value))


def _key(key: Any, path: str, seen: dict[str, Any]) -> str:
    """`key_text(key)`, once per dict (`seen`: the keys so far, by their text)."""
    try:
        text = key_text(key)
    except TypeError as exc:
        raise _Refused(
            TypeError,
            path,
            f"has {exc}: JSON object keys are text; use str, int, float, bool, None "
            "or an Enum of those as keys",
        ) from None
    except ValueError as exc:
        raise _Refused(ValueError, path, f"has {exc}") from None
    if text in seen:
        raise _Refused(
            ValueError,
            path,
            f"has two keys that JSON writes as {text!r} ({seen[text]!r} and {key!r}): "
            "one would be lost",
        )
    seen[text] = key
    return text
