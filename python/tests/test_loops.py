"""One SDK object used across successive event loops (one `asyncio.run` after
another): results stay right, and nothing a closed loop owned (a gRPC
channel, a stream's call, a task, an asyncio.Event) is left to fail later
with gRPC's "RuntimeError: Event loop is closed" or any other traceback."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, Callable

import pytest

from errand import AsyncClient, Completion, Worker, async_tool
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, Quiet, unique


def double_tool() -> tuple[Callable[..., Any], str]:
    @async_tool(name=unique("double"))
    def double(n: int) -> int:
        """Double a number."""
        return 2 * n

    return double, tool_def(double).name


def test_an_async_client_serves_loop_after_loop_and_closes_quietly(
    server: str, start_worker: Callable[..., Worker], quiet: Quiet
) -> None:
    # The first loop's channel (and the stream left open on it, its last read
    # cancelled) outlived asyncio.run: gRPC's poller printed "RuntimeError:
    # Event loop is closed" tracebacks in the next loops and at close(). The
    # operations a cancel leaves complete a moment later: a race with the
    # loop's end, so it is run several times.
    double, name = double_tool()
    start_worker(double)
    client = AsyncClient(server, session_id=unique("session"))
    seen: list[Completion] = []

    async def one(n: int) -> None:
        quiet.watch()
        ack = await client.submit(name, {"n": n})
        assert await client.result(ack.task_id, timeout=EVENT_TIMEOUT) == 2 * n
        both = await asyncio.gather(
            client.submit(name, {"n": n + 1}, wait=True),
            client.submit(name, {"n": n + 2}, wait=True),
        )
        assert both == [2 * (n + 1), 2 * (n + 2)]
        # Iterated briefly and left open, its last read cancelled (nothing
        # more comes: the wait runs out).
        stream = client.completions(after_seq=seen[-1].seq if seen else 0)
        async for completion in stream:
            seen.append(completion)
            if len(seen) % 3 == 0:
                break
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(stream.__anext__(), 0.05)

    for n in range(0, 80, 10):
        asyncio.run(one(n))
    asyncio.run(client.close())
    gc.collect()  # what a closed loop left behind may fail when collected
    assert sorted(c.result for c in seen) == [
        2 * (n + i) for n in range(0, 80, 10) for i in range(3)
    ]
    assert len({c.seq for c in seen}) == len(seen)
    quiet.check()


def test_an_async_clients_stream_goes_on_in_the_next_loop(
    server: str, start_worker: Callable[..., Worker], quiet: Quiet
) -> None:
    # A stream is a cursor over the session: its call belonged to the first
    # loop, and the next loop reopens it after the last completion it gave.
    double, name = double_tool()
    start_worker(double)
    client = AsyncClient(server, session_id=unique("session"))
    stream = client.completions()

    async def take(n: int) -> Any:
        quiet.watch()
        await client.submit(name, {"n": n})
        done = await asyncio.wait_for(stream.__anext__(), EVENT_TIMEOUT)
        return done.result

    for n in (1, 2, 3):
        assert asyncio.run(take(n)) == 2 * n
        gc.collect()

    async def end() -> None:
        await stream.aclose()
        await client.close()

    asyncio.run(end())
    quiet.check()


def test_a_second_live_loop_is_refused_clearly(server: str, quiet: Quiet) -> None:
    client = AsyncClient(server, session_id=unique("session"))

    async def two_loops_at_once() -> None:
        quiet.watch()
        await client.list_tools()
        with pytest.raises(RuntimeError, match="belongs to another event loop"):
            await asyncio.to_thread(lambda: asyncio.run(client.list_tools()))
        await client.close()

    asyncio.run(two_loops_at_once())
    quiet.check()
