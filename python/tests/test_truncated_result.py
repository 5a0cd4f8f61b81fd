"""A completion over its result budget carries no result (`Completion.result`
is None): its docstring says so and how to read it, and
`completion_result(completion)` reads it whole."""

from __future__ import annotations

import asyncio
from typing import Callable

import pytest

from errand import AsyncClient, Client, Completion, TaskFailed, Worker, async_tool

from .conftest import EVENT_TIMEOUT, Collector, unique


def test_completion_result_doc_says_how_to_read_a_truncated_result() -> None:
    doc = Completion.result.__doc__ or ""
    assert "result_truncated" in doc and "completion_result" in doc
    assert "read_full_result" in doc


def test_a_truncated_completion_is_read_whole_by_completion_result(
    server: str, start_worker: Callable[..., Worker], collect: Callable[..., Collector]
) -> None:
    big_name, bad_name = unique("big"), unique("bad")

    @async_tool(name=big_name, result_budget_bytes=1024)
    def big(n: int) -> dict[str, str]:
        return {"data": "y" * n}

    @async_tool(name=bad_name)
    def bad() -> str:
        raise ValueError("no")

    start_worker(big, bad)
    with Client(server, session_id=unique("session")) as client:
        stream = collect(client.completions())
        client.submit(big_name, n=100_000)
        (done,) = stream.take(1)
        assert done.ok and done.result_truncated and done.result is None
        assert client.completion_result(done) == {"data": "y" * 100_000}
        client.submit(bad_name)
        (failed,) = stream.take(1)
        with pytest.raises(TaskFailed):
            client.completion_result(failed)

        async def read() -> object:
            async with AsyncClient(server, session_id=client.session_id) as aclient:
                return await aclient.completion_result(done)

        assert asyncio.run(asyncio.wait_for(read(), EVENT_TIMEOUT)) == {"data": "y" * 100_000}
