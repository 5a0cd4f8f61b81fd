"""What a tool may return: a value JSON can carry, once.

A generator (or async generator) function is refused when it is made a
tool, with what to do instead, rather than failing every call later. A
result JSON cannot carry fails its task with `invalid_result`, as NaN, bytes
that are not UTF-8 and oversized results do, from a plain function (on a
pool thread) and from an `async def` alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable

import pytest

from errand import AsyncToolManager, Client, TaskFailed, Worker, async_tool
from errand.tool import tool_def

from .conftest import unique


def numbers(n: int) -> Iterator[int]:
    """Counts up to n."""
    yield from range(n)


async def anumbers(n: int) -> AsyncIterator[int]:
    """Counts up to n."""
    for i in range(n):
        yield i


@pytest.mark.parametrize("fn", [numbers, anumbers], ids=["generator", "async_generator"])
def test_a_generator_function_is_refused_as_a_tool(fn: Callable[..., Any]) -> None:
    for make in (
        lambda: async_tool(fn),
        lambda: async_tool(name="counted")(fn),
        lambda: Worker("127.0.0.1:1", tools=[fn]),
        lambda: AsyncToolManager(1, server="127.0.0.1:1").submit("counted", fn, n=2),
    ):
        with pytest.raises(TypeError) as refused:
            make()
        text = str(refused.value)
        assert fn.__name__ in text and "generator" in text, text
        assert "return a list" in text and "report_progress" in text, text


def test_a_result_json_cannot_carry_fails_with_invalid_result(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    @async_tool(name=unique("opaque"))
    def opaque() -> Any:
        return {"handle": object()}

    @async_tool(name=unique("aopaque"))
    async def aopaque() -> Any:
        return {"handle": object()}

    start_worker(opaque, aopaque)
    for fn in (opaque, aopaque):
        with pytest.raises(TaskFailed) as failed:
            client.submit(tool_def(fn).name, wait=True)
        assert (failed.value.status, failed.value.code) == ("FAILED", "invalid_result")
        assert "not JSON serialisable" in failed.value.message
        assert "object is not JSON serialisable" in failed.value.message
