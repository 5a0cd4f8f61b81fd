"""NaN and infinities are refused where they are made, naming where they are.

JSON has no NaN or Infinity: `json.dumps` writes them as the bare words
`NaN`/`Infinity` by default, which the server refuses as "not valid JSON at
line 1 column 1", far from the value. Every JSON text the SDK makes now
refuses them (`allow_nan=False`) with a ValueError that names the argument
(or the place in the result, detail or schema) that holds one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import pytest

from errand import (
    AsyncClient,
    AsyncToolManager,
    Client,
    InvalidArgument,
    TaskFailed,
    Worker,
    async_tool,
)
from errand.tool import tool_def

from .conftest import unique

NOWHERE = "127.0.0.1:1"  # no server: a refusal that got that far would be Unavailable


def test_a_submit_with_nan_is_refused_before_any_call_naming_the_argument() -> None:
    with Client(NOWHERE) as client:
        with pytest.raises(ValueError, match=r"argument x is nan") as caught:
            client.submit("tool", x=float("nan"))
        assert isinstance(caught.value, InvalidArgument)  # as any argument that is not JSON
        with pytest.raises(ValueError, match=r"argument point\['y'\]\[1\] is inf"):
            client.submit("tool", {"point": {"x": 1.0, "y": [0.0, float("inf")]}})
        with pytest.raises(ValueError, match=r"argument low is -inf"):
            client.submit("tool", {"low": float("-inf")})

    async def via_async() -> None:
        async with AsyncClient(NOWHERE) as aclient:
            await aclient.submit("tool", x=float("nan"))

    with pytest.raises(ValueError, match=r"argument x is nan"):
        asyncio.run(via_async())


def test_a_manager_refuses_nan_before_it_connects() -> None:
    manager = AsyncToolManager(max_workers=1, server=NOWHERE)

    @async_tool(manager)
    def takes(x: float) -> float:
        return x

    with pytest.raises(ValueError, match=r"argument x is nan"):
        takes(x=float("nan"))
    with pytest.raises(ValueError, match=r"argument x is nan"):
        manager.submit_call("takes", {"x": float("nan")})


def test_a_result_with_nan_fails_its_task_naming_where(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    @async_tool(name=unique("stats"))
    def stats(kind: str) -> Any:
        if kind == "nested":
            return {"mean": 1.0, "spread": [0.5, float("nan")]}
        return float("inf")

    start_worker(stats)
    name = tool_def(stats).name
    for kind, where in (("nested", "result['spread'][1] is nan"), ("plain", "result is inf")):
        with pytest.raises(TaskFailed) as failed:
            client.submit(name, kind=kind, wait=True)
        assert failed.value.code == "invalid_result", failed.value
        assert where in failed.value.message, failed.value.message
        assert "line 1 column 1" not in failed.value.message


def test_a_nan_default_is_left_out_of_the_schema_and_a_nan_schema_is_refused() -> None:
    @async_tool
    def defaulted(x: float = float("nan"), y: float = 1.5) -> float:
        return x

    spec = tool_def(defaulted)
    schema = json.loads(spec.input_schema_json)  # valid JSON
    assert "default" not in schema["properties"]["x"]
    assert schema["properties"]["y"]["default"] == 1.5

    with pytest.raises(ValueError, match=r"tool 'bounded': schema\['properties'\].* is inf"):

        @async_tool(schema={"type": "object", "properties": {"x": {"maximum": float("inf")}}})
        def bounded(x: float) -> float:
            return x


def test_a_progress_detail_with_nan_is_refused_naming_where() -> None:
    from errand._outgoing import progress

    with pytest.raises(ValueError, match=r"progress detail\['v'\] is nan"):
        progress("t", 1, 1, 2, "m", {"v": float("nan")}, 1 << 20)
