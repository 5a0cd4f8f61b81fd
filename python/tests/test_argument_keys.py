"""Dict arguments keyed by Enum members (and ints, floats, bools) arrive as sent.

An `@async_tool(manager)` function, `manager.submit`/`submit_call` and an
`AsyncAgent` on a manager send the call's arguments as JSON, whose object
keys are strings. An Enum key is sent as its value (as JSON writes that
value as a key: "red", "1", "0.5", "true"), and the worker, whose hint names
the key type, builds the key back from that text: the tool gets exactly the
dict it was called with. A key JSON cannot carry (a tuple, say), or two keys
that JSON would write alike, is refused at the call with a TypeError that
names the argument, before anything is sent.
"""

from __future__ import annotations

import asyncio
import enum
import queue
from typing import Any, Callable, Literal, Optional

import pytest

from errand import (
    AsyncAgent,
    AsyncClient,
    AsyncToolManager,
    Client,
    InvalidArgument,
    Worker,
    async_tool,
)
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, unique

NOWHERE = "127.0.0.1:1"  # no server: a refusal that got that far would be Unavailable


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


class Ratio(enum.Enum):
    HALF = 0.5
    WHOLE = 1.0


class Flag(enum.IntEnum):
    OFF = 0
    ON = 1


class Shade(str, enum.Enum):
    DARK = "dark"


def typed(value: Any) -> Any:
    """`value` with the type of everything in it, keys included: 1, True,
    1.0 and Flag.ON are equal in Python, and differ here."""
    if isinstance(value, dict):
        return ("dict", sorted(((typed(k), typed(v)) for k, v in value.items()), key=repr))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value).__name__, value)


SENT: dict[str, Any] = {
    "counts": {Color.RED: 2, Color.BLUE: 0},
    "levels": {Level.LOW: "calm", Level.HIGH: "busy"},
    "ratios": {Ratio.HALF: True, Ratio.WHOLE: False},
    "flags": {Flag.OFF: [], Flag.ON: [Color.BLUE]},
    "shades": {Shade.DARK: 3},
    "by_id": {1: "one", -20: "minus twenty"},
    "by_weight": {0.25: "light", 2.0: "heavy"},
    "by_truth": {True: "yes", False: "no"},
    "nested": [{Color.RED: {Level.HIGH: Color.BLUE}}],
    "chosen": Color.BLUE,
    "maybe": {Color.RED: 1},
}


def tally_into(received: queue.Queue[dict[str, Any]]) -> Callable[..., int]:
    """A tool function that puts the arguments it got into `received`."""

    def tally(
        counts: dict[Color, int],
        levels: dict[Level, str],
        ratios: dict[Ratio, bool],
        flags: dict[Flag, list[Color]],
        shades: dict[Shade, int],
        by_id: dict[int, str],
        by_weight: dict[float, str],
        by_truth: dict[bool, str],
        nested: list[dict[Color, dict[Level, Color]]],
        chosen: Literal[Color.RED, Color.BLUE],
        maybe: Optional[dict[Color, int]] = None,
    ) -> int:
        """Counts things by color and more."""
        received.put(
            {
                "counts": counts,
                "levels": levels,
                "ratios": ratios,
                "flags": flags,
                "shades": shades,
                "by_id": by_id,
                "by_weight": by_weight,
                "by_truth": by_truth,
                "nested": nested,
                "chosen": chosen,
                "maybe": maybe,
            }
        )
        return len(counts)

    return tally


def test_enum_keys_arrive_as_sent_through_the_manager_and_an_agent(server: str) -> None:
    manager = AsyncToolManager(max_workers=2, session_id=unique("session"))
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    tally = async_tool(manager, name=unique("tally"))(tally_into(received))
    name = tally.__errand_tool__.name  # type: ignore[attr-defined]

    class Agent:
        async def send(self, message: str) -> str:
            return "ok"

    async def through_an_agent() -> str:
        async with AsyncAgent(Agent(), manager) as agent:
            return (await agent.submit(name, SENT)).task_id

    try:
        task_ids = [
            tally(**SENT).split()[1],  # "Task <id> submitted: ..."
            manager.submit(name, **SENT),
            manager.submit_call(name, SENT).task_id,
            asyncio.run(asyncio.wait_for(through_an_agent(), EVENT_TIMEOUT)),
        ]
        for task_id in task_ids:
            assert manager.result(task_id, timeout=EVENT_TIMEOUT) == 2
            got = received.get(timeout=EVENT_TIMEOUT)
            assert typed(got) == typed(SENT)
    finally:
        manager.stop()


def test_enum_keys_arrive_as_sent_through_a_client_its_tools_and_an_agent_on_one(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    """Client.submit, client.tool(), AsyncClient.submit and tool(), and an
    AsyncAgent on an AsyncClient encode arguments as the manager does."""
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    tally = async_tool(name=unique("tally"))(tally_into(received))
    name = tool_def(tally).name
    start_worker(tally)
    session = unique("session")

    class Agent:
        async def send(self, message: str) -> str:
            return "ok"

    async def through_asyncio() -> list[str]:
        async with AsyncClient(server, session_id=session) as aclient:
            tool = await aclient.tool(name)
            task_ids = [
                (await aclient.submit(name, SENT)).task_id,
                (await aclient.submit(name, **SENT)).task_id,
                (await tool.submit(**SENT)).task_id,  # type: ignore[attr-defined]
            ]
            async with AsyncAgent(Agent(), aclient) as agent:
                task_ids.append((await agent.submit(name, SENT)).task_id)
            return task_ids

    with Client(server, session_id=session) as client:
        task_ids = [
            client.submit(name, SENT).task_id,
            client.submit(name, **SENT).task_id,
            client.tool(name).submit(**SENT).task_id,  # type: ignore[attr-defined]
            client.tool(name)(**SENT).split()[1],  # "Task <id> submitted: ..."
            *asyncio.run(asyncio.wait_for(through_asyncio(), EVENT_TIMEOUT)),
        ]
        for task_id in task_ids:
            assert client.result(task_id, timeout=EVENT_TIMEOUT) == 2
            got = received.get(timeout=EVENT_TIMEOUT)
            assert typed(got) == typed(SENT)


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({(1, 2): "x"}, r"argument where has a key of type tuple \(\(1, 2\)\)"),
        ({"a": {frozenset({1}): "x"}}, r"argument where\['a'\] has a key of type frozenset"),
        ({Color.RED: "x", "red": "y"}, r"argument where has two keys that JSON writes as 'red'"),
        ({1: "x", "1": "y"}, r"argument where has two keys that JSON writes as '1'"),
        (
            {"a": [object()]},
            r"argument where\['a'\]\[0\] is not JSON: object is not",
        ),
    ],
)
def test_a_key_json_cannot_carry_is_refused_naming_the_argument(given: Any, said: str) -> None:
    manager = AsyncToolManager(max_workers=1, server=NOWHERE)

    @async_tool(manager)
    def spots(where: dict[Any, Any]) -> int:
        """Marks spots."""
        return len(where)

    with pytest.raises(TypeError, match=said) as caught:
        spots(where=given)
    assert isinstance(caught.value, InvalidArgument)  # as any argument that is not JSON
    with pytest.raises(TypeError, match=said):
        manager.submit_call("spots", {"where": given})
    with Client(NOWHERE) as client, pytest.raises(TypeError, match=said) as caught:
        client.submit("spots", {"where": given})
    assert isinstance(caught.value, InvalidArgument)

    async def through_asyncio() -> None:
        async with AsyncClient(NOWHERE) as aclient:
            await aclient.submit("spots", where=given)

    with pytest.raises(TypeError, match=said):
        asyncio.run(through_asyncio())
