"""Tool return values as JSON (not public): what `json.dumps` does not know."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import json
from typing import Any

__all__ = ["to_json"]


def to_json(value: Any) -> Any:
    """`json.dumps(default=...)` for pydantic models, dataclasses, enums, sets, dates,
    bytes and Decimals; raises TypeError for anything else."""
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
        return value.decode("utf-8", errors="replace")
    if isinstance(value, decimal.Decimal):  # DynamoDB numbers, for one
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
