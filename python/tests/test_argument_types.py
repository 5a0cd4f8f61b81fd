"""A tool's arguments arrive as its type hints say, at every level.

JSON has objects, arrays, strings and numbers; the worker builds what the
hints name from them, wherever it sits in the hint: an Enum, a pydantic
model, a tuple (fixed-length or `tuple[T, ...]`), a set, inside list[...],
dict[str, ...] (its keys too when they are an Enum), tuple[...],
Optional[...] and Annotated[...].
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Callable, Optional

import pydantic
import pytest

from errand import Client, TaskFailed, Worker, async_tool
from errand.tool import tool_def

from .conftest import unique


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(pydantic.BaseModel):
    x: int
    y: int


def kinds(value: Any) -> Any:
    """The Python types inside `value`, as JSON (what the tool reports)."""
    if isinstance(value, dict):
        return {"dict": [[type(k).__name__, kinds(v)] for k, v in sorted(value.items(), key=str)]}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return {type(value).__name__: [kinds(v) for v in items]}
    return type(value).__name__


def test_arguments_are_built_at_every_level_of_their_hints(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    @async_tool(name=unique("coerce_probe"))
    def probe(
        top: Color,
        in_list: list[Color],
        in_dict: dict[str, Color],
        enum_keys: dict[Color, int],
        in_tuple: tuple[Color, int],
        pair: tuple[int, str],
        many: tuple[Color, ...],
        tags: set[Color],
        points: dict[str, Point],
        pointed: tuple[Point, Annotated[Color, "its color"]],
        nested: list[dict[str, tuple[Color, Optional[Point]]]],
        opt: Optional[Color] = None,
    ) -> dict[str, Any]:
        """Reports the Python types it received."""
        return {k: kinds(v) for k, v in locals().items()}

    start_worker(probe)
    result = client.submit(
        tool_def(probe).name,
        top="red",
        in_list=["red"],
        in_dict={"k": "red"},
        enum_keys={"blue": 1},
        in_tuple=["red", 1],
        pair=[1, "a"],
        many=["red", "blue"],
        tags=["blue"],
        points={"p": {"x": 1, "y": 2}},
        pointed=[{"x": 1, "y": 2}, "blue"],
        nested=[{"a": ["red", {"x": 3, "y": 4}], "b": ["blue", None]}],
        opt="blue",
        wait=True,
    )
    assert result == {
        "top": "Color",
        "in_list": {"list": ["Color"]},
        "in_dict": {"dict": [["str", "Color"]]},
        "enum_keys": {"dict": [["Color", "int"]]},
        "in_tuple": {"tuple": ["Color", "int"]},
        "pair": {"tuple": ["int", "str"]},
        "many": {"tuple": ["Color", "Color"]},
        "tags": {"set": ["Color"]},
        "points": {"dict": [["str", "Point"]]},
        "pointed": {"tuple": ["Point", "Color"]},
        "nested": {
            "list": [
                {
                    "dict": [
                        ["str", {"tuple": ["Color", "Point"]}],
                        ["str", {"tuple": ["Color", "NoneType"]}],
                    ]
                }
            ]
        },
        "opt": "Color",
    }


def test_a_value_its_hint_refuses_fails_the_call_as_invalid_arguments(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    @async_tool(name=unique("coerce_refuse"))
    def refuse(counts: dict[Color, int]) -> int:
        """Takes counts by color (the schema cannot name the keys: the worker checks them)."""
        return len(counts)

    start_worker(refuse)
    with pytest.raises(TaskFailed) as failed:
        client.submit(tool_def(refuse).name, counts={"green": 1}, wait=True)
    assert (failed.value.status, failed.value.code) == ("FAILED", "invalid_arguments")
    assert "green" in failed.value.message


@pytest.mark.parametrize(
    ("hint", "given", "expected"),
    [
        (tuple, [1, "a"], (1, "a")),
        (tuple[int, ...], [1, 2], (1, 2)),
        (frozenset[int], [1, 2], frozenset({1, 2})),
        (dict[str, int], {"a": 1}, {"a": 1}),
        (Optional[tuple[int, int]], None, None),
    ],
)
def test_plain_containers_take_their_own_type(hint: Any, given: Any, expected: Any) -> None:
    def fn(v: Any) -> None:
        return None

    fn.__annotations__ = {"v": hint, "return": None}
    _, kwargs = tool_def(async_tool(name="plain_containers")(fn)).bind({"v": given})
    assert kwargs["v"] == expected
    assert type(kwargs["v"]) is type(expected)
