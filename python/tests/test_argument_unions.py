"""A Union of several types is built as pydantic's "smart" union mode builds it.

The worker takes the first member that the JSON value is exactly (5 is an
int for `int | str`, "5" a str, an array a list for `list[...]`), else the
first member, in order, that the value fits all through (an Enum that has
it as a value, a pydantic model that validates it, a tuple of the right
length...). A value that fits no member is left as it is, not refused.
"""

from __future__ import annotations

import enum
import sys
from typing import Annotated, Any, Callable, Literal, Optional, Union

import pydantic
import pytest

from errand import Client, Worker, async_tool
from errand.tool import tool_def

from .conftest import unique


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(pydantic.BaseModel):
    x: int
    y: int


class Circle(pydantic.BaseModel):
    radius: float


class Square(pydantic.BaseModel):
    side: float


def typed(value: Any) -> Any:
    """`value` with the type of everything in it (1 == True == 1.0 in Python)."""
    if isinstance(value, dict):
        return ("dict", sorted(((typed(k), typed(v)) for k, v in value.items()), key=repr))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, sorted((typed(v) for v in value), key=repr))
    return (type(value).__name__, value)


def test_unions_are_built_by_the_worker(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    @async_tool(name=unique("union_probe"))
    def probe(
        num_or_text: Union[int, str],
        text_or_num: Union[str, int],
        color_or_num: Union[Color, int],
        shape: Optional[Union[Circle, Square]],
        one_or_many: Union[Point, list[Point]],
        pair_or_text: Union[tuple[int, int], str],
        mixed: list[Union[Color, Point]],
    ) -> dict[str, Any]:
        """Reports the Python types it received."""
        return {k: repr(typed(v)) for k, v in locals().items()}

    start_worker(probe)
    name = tool_def(probe).name
    calls: list[dict[str, Any]] = [
        {
            "num_or_text": 5,
            "text_or_num": "5",
            "color_or_num": "red",
            "shape": {"side": 2},
            "one_or_many": [{"x": 1, "y": 2}],
            "pair_or_text": [1, 2],
            "mixed": ["blue", {"x": 3, "y": 4}],
        },
        {
            "num_or_text": "5",
            "text_or_num": 5,
            "color_or_num": 3,
            "shape": {"radius": 1.5},
            "one_or_many": {"x": 1, "y": 2},
            "pair_or_text": "ab",
            "mixed": [],
        },
        {
            "num_or_text": 0,
            "text_or_num": "",
            "color_or_num": "blue",
            "shape": None,
            "one_or_many": [],
            "pair_or_text": "",
            "mixed": [{"x": 0, "y": 0}],
        },
    ]
    expected: list[dict[str, Any]] = [
        {
            "num_or_text": 5,
            "text_or_num": "5",
            "color_or_num": Color.RED,
            "shape": Square(side=2),
            "one_or_many": [Point(x=1, y=2)],
            "pair_or_text": (1, 2),
            "mixed": [Color.BLUE, Point(x=3, y=4)],
        },
        {
            "num_or_text": "5",
            "text_or_num": 5,
            "color_or_num": 3,
            "shape": Circle(radius=1.5),
            "one_or_many": Point(x=1, y=2),
            "pair_or_text": "ab",
            "mixed": [],
        },
        {
            "num_or_text": 0,
            "text_or_num": "",
            "color_or_num": Color.BLUE,
            "shape": None,
            "one_or_many": [],
            "pair_or_text": "",
            "mixed": [Point(x=0, y=0)],
        },
    ]
    for arguments, want in zip(calls, expected):
        got = client.submit(name, arguments, wait=True)
        assert got == {k: repr(typed(v)) for k, v in want.items()}


UNIONS: list[Any] = [
    # An exact match first, whatever the order.
    (Union[int, str], 5, 5),
    (Union[int, str], "5", "5"),
    (Union[str, int], 5, 5),
    (Union[float, int], 5, 5),
    (Union[int, float], 2.5, 2.5),
    (Union[int, bool], True, True),
    (Union[str, Color], "red", "red"),
    (Union[tuple[int, int], list[int]], [1, 2], [1, 2]),
    (Union[Literal["a"], int], "a", "a"),
    # Else the first member, in order, that the value fits.
    (Union[Color, int], "red", Color.RED),
    (Union[Color, int], 3, 3),
    (Optional[Union[Color, int]], "blue", Color.BLUE),
    (Annotated[Union[Color, int], "a color or a count"], "red", Color.RED),
    (Union[Literal[Color.RED], int], "red", Color.RED),
    (Optional[Union[Circle, Square]], None, None),
    (Optional[Union[Circle, Square]], {"radius": 1}, Circle(radius=1)),
    (Optional[Union[Circle, Square]], {"side": 2}, Square(side=2)),
    (Union[Point, list[Point]], {"x": 1, "y": 2}, Point(x=1, y=2)),
    (Union[Point, list[Point]], [{"x": 1, "y": 2}], [Point(x=1, y=2)]),
    (Union[tuple[int, int], str], [1, 2], (1, 2)),
    (Union[tuple[int, int], list[str]], ["a", "b"], ["a", "b"]),
    (Union[set[Color], str], ["red"], {Color.RED}),
    (Union[dict[Color, int], str], {"red": 1}, {Color.RED: 1}),
    (Union[dict[int, str], dict[str, str]], {"1": "a"}, {1: "a"}),
    (list[Union[Color, Point]], ["blue", {"x": 1, "y": 2}], [Color.BLUE, Point(x=1, y=2)]),
    (dict[str, Union[Color, int]], {"a": "red", "b": 2}, {"a": Color.RED, "b": 2}),
    # None fits: left as it is, not refused.
    (Union[Color, Point], "green", "green"),
    (Union[int, str], 2.5, 2.5),
    (Union[int, str], True, True),
    (Union[Point, list[Point]], [{"x": "a"}], [{"x": "a"}]),
    (Union[tuple[int, int], Color], [1, 2, 3], [1, 2, 3]),
]
if sys.version_info >= (3, 10):
    UNIONS += [
        (eval("int | str"), 5, 5),
        (eval("Color | int"), "red", Color.RED),
        (eval("Point | list[Point] | None"), [{"x": 1, "y": 2}], [Point(x=1, y=2)]),
    ]


@pytest.mark.parametrize(
    ("hint", "given", "expected"), UNIONS, ids=[f"{h!r} <- {g!r}" for h, g, _ in UNIONS]
)
def test_a_union_takes_an_exact_match_then_the_first_that_fits(
    hint: Any, given: Any, expected: Any
) -> None:
    def fn(v: Any) -> None:
        return None

    fn.__annotations__ = {"v": hint, "return": None}
    _, kwargs = tool_def(async_tool(name="unions")(fn)).bind({"v": given})
    assert typed(kwargs["v"]) == typed(expected)
