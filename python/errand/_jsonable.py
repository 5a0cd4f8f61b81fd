"""Values as JSON texts (not public): what `json.dumps` does not know, and
what JSON cannot carry.

Every JSON text the SDK sends is made with `allow_nan=False`: JSON has no
NaN or Infinity (`json.dumps` would write the bare words, which the server
refuses as "not valid JSON at line 1 column 1"), so such a value is refused
where it is made, with a ValueError that says where it is (`dumps`,
`not_finite`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import json
import math
from typing import Any, Callable, Optional

__all__ = ["dumps", "not_finite", "to_json"]

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
    """`json.dumps(default=...)` for pydantic models, dataclasses, enums, sets, dates,
    UTF-8 bytes and Decimals; raises TypeError for anything else (NotUTF8 for
    other bytes)."""
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
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            # Replacing the bad bytes would change the value unseen.
            raise NotUTF8(
                f"bytes that are not UTF-8 text ({value[:32]!r}"
                f"{'...' if len(value) > 32 else ''}): decode them, or encode them as "
                "base64, before returning them"
            ) from None
    if isinstance(value, decimal.Decimal):  # DynamoDB numbers, for one
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
