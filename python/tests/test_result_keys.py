"""Results and progress details carry Enum keys and values as arguments do.

A tool's result and a progress report's detail are made JSON by the one
encoder a call's arguments go through (errand._jsonable.encode): an Enum key
or value as its value (a key as JSON writes that value: "red", "1", "0.5",
"true"). A key JSON cannot carry, or two keys JSON would write alike, is
refused naming where: the result fails its task with `invalid_result`,
`report_progress` raises ValueError and the task goes on.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Callable

import pytest

from errand import Client, TaskContext, TaskFailed, Worker, async_tool
from errand._jsonable import encode, plain_json
from errand.tool import tool_def
from errand.v1 import errand_pb2 as pb

from .conftest import unique


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.Enum):
    LOW = 1


class Flag(enum.IntEnum):
    ON = 1


class Shade(str, enum.Enum):
    DARK = "dark"


RETURNED: dict[str, Any] = {
    "counts": {Color.RED: 2, Color.BLUE: 0},
    "levels": {Level.LOW: [Color.BLUE]},
    "flags": {Flag.ON: Shade.DARK},
    "shades": {Shade.DARK: True},
    "mixed": {0.5: Level.LOW, True: None, 7: "seven"},
    "chosen": Color.RED,
}
AS_JSON: dict[str, Any] = {
    "counts": {"red": 2, "blue": 0},
    "levels": {"1": ["blue"]},
    "flags": {"1": "dark"},
    "shades": {"dark": True},
    "mixed": {"0.5": 1, "true": None, "7": "seven"},
    "chosen": "red",
}


def test_a_result_with_enum_keys_and_values_arrives_as_their_values(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    @async_tool(name=unique("tally"))
    def tally() -> Any:
        return RETURNED

    @async_tool(name=unique("atally"))
    async def atally() -> Any:
        return [RETURNED, {Color.BLUE: {Level.LOW: Color.RED}}]

    start_worker(tally, atally)
    assert client.submit(tool_def(tally).name, wait=True) == AS_JSON
    got = client.submit(tool_def(atally).name, wait=True)
    assert got == [AS_JSON, {"blue": {"1": "red"}}]


@pytest.mark.parametrize(
    ("returned", "said"),
    [
        ({1: "x", "1": "y"}, "result has two keys that JSON writes as '1'"),
        ({"a": {Color.RED: 1, "red": 2}}, "result['a'] has two keys that JSON writes as 'red'"),
        ({"a": [{(1, 2): "x"}]}, "result['a'][0] has a key of type tuple"),
    ],
)
def test_a_result_json_would_lose_or_refuse_fails_naming_where(
    client: Client, start_worker: Callable[..., Worker], returned: Any, said: str
) -> None:
    @async_tool(name=unique("lossy"))
    def lossy() -> Any:
        return returned

    start_worker(lossy)
    with pytest.raises(TaskFailed) as failed:
        client.submit(tool_def(lossy).name, wait=True)
    assert failed.value.code == "invalid_result", failed.value
    assert said in failed.value.message, failed.value.message


def context(sent: list[pb.WorkerMessage]) -> TaskContext:
    return TaskContext("t1", "s1", "crawl", 1, 0, _send=sent.append)


def test_a_progress_detail_with_enum_keys_and_values_goes_as_their_values() -> None:
    sent: list[pb.WorkerMessage] = []
    context(sent).report_progress(1, 2, "half", RETURNED)
    (msg,) = sent
    assert json.loads(msg.progress.detail_json) == AS_JSON


@pytest.mark.parametrize(
    ("detail", "said"),
    [
        ({1: "x", "1": "y"}, "progress detail has two keys that JSON writes as '1'"),
        ({"a": {(1, 2): "x"}}, r"progress detail\['a'\] has a key of type tuple"),
    ],
)
def test_a_progress_detail_json_would_lose_or_refuse_is_refused_naming_where(
    detail: Any, said: str
) -> None:
    sent: list[pb.WorkerMessage] = []
    with pytest.raises(ValueError, match=said):
        context(sent).report_progress(1, 2, "half", detail)
    assert not sent


@dataclasses.dataclass
class Box:
    inside: dict[Any, Any]


@pytest.mark.parametrize(
    "value",
    [
        RETURNED,
        {"plain": [{"a": 1, "b": [None, True, 0.5, "é"]}], "box": Box({Color.RED: Level.LOW})},
        [{"k": Box({"x": (1, 2)})}, ({"t": Flag.ON},)],
        {"by_int": {1: "one"}, "by_str": {"1": "one"}},
    ],
)
def test_the_encoder_writes_what_plain_json_makes(value: Any) -> None:
    """json's C encoder goes first (a result may be megabytes): its text is
    the one `plain_json` would make, or the slow way decides."""
    text = encode(value, "the result", "result")
    assert text == json.dumps(plain_json(value, "the result", "result"), ensure_ascii=False)
    assert encode(value, "argument", compact=True) == json.dumps(
        plain_json(value, "argument"), ensure_ascii=False, separators=(",", ":")
    )


def test_what_to_json_makes_is_refused_naming_where() -> None:
    with pytest.raises(ValueError, match=r"result\['b'\]\['inside'\] has two keys"):
        encode({"b": Box({1: "x", "1": "y"})}, "the result", "result")
    with pytest.raises(TypeError, match=r"result\['b'\]\['inside'\]\['k'\] is not JSON"):
        encode({"b": Box({"k": object()})}, "the result", "result")
