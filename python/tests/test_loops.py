"""One SDK object used across successive event loops (one `asyncio.run` after
another): results stay right, and nothing a closed loop owned (a gRPC
channel, a stream's call, a task, an asyncio.Event) is left to fail later
with gRPC's "RuntimeError: Event loop is closed" or any other traceback."""

from __future__ import annotations

import asyncio
import gc
import queue
from typing import Any, Callable

import pytest

from errand import (
    AsyncAgent,
    AsyncClient,
    AsyncTaskResult,
    AsyncToolManager,
    Client,
    Completion,
    Worker,
    async_tool,
)
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


class Model:
    """An agent whose turns land in a thread-safe inbox, awaited from any loop."""

    def __init__(self) -> None:
        self.inbox: queue.Queue[str] = queue.Queue()
        self.messages: list[str] = []

    async def send(self, message: str) -> str:
        self.messages.append(message)
        self.inbox.put(message)
        return "ok"

    async def until(self, *texts: str) -> None:
        """Await the turns whose messages hold `texts`."""
        left = set(texts)
        while left:
            message = await asyncio.to_thread(self.inbox.get, timeout=EVENT_TIMEOUT)
            left = {t for t in left if t not in message}


def once_each(messages: list[str], task_ids: list[str]) -> None:
    for task_id in task_ids:
        assert sum(m.count(task_id) for m in messages) == 1, (task_id, messages)


def test_an_async_agent_serves_loop_after_loop_and_closes_quietly(
    server: str, start_worker: Callable[..., Worker], quiet: Quiet
) -> None:
    # Left open as asyncio.run ended, the agent refused the next loop ("this
    # AsyncAgent runs on another event loop"), close() included, and its
    # tasks died pending with the first loop.
    double, name = double_tool()
    start_worker(double)
    session = unique("session")
    client = AsyncClient(server, session_id=session)
    model = Model()
    agent = AsyncAgent(model, client, batch_window=0, digest=False)
    task_ids: list[str] = []

    async def one(n: int) -> None:
        quiet.watch()
        assert await agent.send(f"hello {n}") == "ok"
        ack = await agent.submit(name, {"n": n})
        task_ids.append(ack.task_id)
        await model.until(ack.task_id)

    for n in range(4):
        asyncio.run(one(n))
        gc.collect()
        # A result that arrives between loops is delivered, once, in the next.
        with Client(server, session_id=session) as blocking:
            ack = blocking.submit(name, {"n": 100 + n})
            assert blocking.result(ack.task_id, timeout=EVENT_TIMEOUT) == 2 * (100 + n)
        task_ids.append(ack.task_id)

    async def last() -> None:
        quiet.watch()
        await agent.send("back")
        if task_ids[-1] not in model.messages[-1]:
            await model.until(task_ids[-1])
        await agent.send("bye")  # after the turn that acknowledged the last result
        assert agent.acked_seq == agent.last_seq == len(task_ids)

    async def close() -> None:
        quiet.watch()
        await agent.close()  # from another loop than the one it last ran on
        await client.close()

    asyncio.run(last())
    asyncio.run(close())
    gc.collect()
    once_each(model.messages, task_ids)
    hellos = [m.split("\n\n")[0] for m in model.messages if m.startswith("hello")]
    assert hellos == [f"hello {n}" for n in range(4)]
    quiet.check()


def test_an_async_agent_on_a_manager_serves_loop_after_loop(server: str, quiet: Quiet) -> None:
    # Made in a loop, it starts itself there at its first result; results
    # that arrive once that loop has ended wait for the next loop.
    manager = AsyncToolManager(max_workers=2, target=server)

    @async_tool(manager, name=unique("triple"))
    def triple(n: int) -> int:
        return 3 * n

    model = Model()
    handed: queue.Queue[AsyncTaskResult] = queue.Queue()
    task_ids: list[str] = []
    made: list[AsyncAgent] = []

    async def first() -> None:
        quiet.watch()
        made.append(AsyncAgent(model, manager, batch_window=0, digest=False))
        manager.add_done_callback(handed.put)  # after the agent's: called after it
        ack = await made[0].submit(tool_def(triple).name, {"n": 1})
        task_ids.append(ack.task_id)
        await model.until(ack.task_id)

    try:
        asyncio.run(first())
        agent = made[0]
        handed.get(timeout=EVENT_TIMEOUT)
        gc.collect()
        task_ids.append(triple.submit(n=2).task_id)
        assert handed.get(timeout=EVENT_TIMEOUT).task_id == task_ids[-1]
        assert [c.task_id for c in agent.pending] == [task_ids[-1]]

        async def second() -> None:
            # Its first use here starts it here: what waited is delivered
            # at once, and the next result too.
            quiet.watch()
            ack = await agent.submit(tool_def(triple).name, {"n": 3})
            task_ids.append(ack.task_id)
            await model.until(*task_ids[1:])
            assert await agent.send("back") == "ok"

        async def close() -> None:
            quiet.watch()
            await agent.close()

        asyncio.run(second())
        asyncio.run(close())
        gc.collect()
        once_each(model.messages, task_ids)
        assert not agent.pending
    finally:
        manager.stop()
    quiet.check()


def test_an_async_agent_still_refuses_a_second_live_loop(server: str, quiet: Quiet) -> None:
    client = AsyncClient(server, session_id=unique("session"))
    agent = AsyncAgent(Model(), client, digest=False)

    async def two_loops_at_once() -> None:
        quiet.watch()
        await agent.start()

        async def send() -> None:
            await agent.send("elsewhere")

        async def close() -> None:
            await agent.close()

        for elsewhere in (send, close):
            with pytest.raises(RuntimeError, match="runs on another event loop"):
                await asyncio.to_thread(asyncio.run, elsewhere())
        await agent.close()
        await client.close()

    asyncio.run(two_loops_at_once())
    quiet.check()


def test_a_turn_cut_short_by_the_loops_end_is_delivered_in_the_next(
    server: str, start_worker: Callable[..., Worker], quiet: Quiet
) -> None:
    # The loop ends while the model handles a result (its send is cancelled,
    # unfinished): the result is not lost with the turn, nor acknowledged;
    # the next loop delivers it.
    double, name = double_tool()
    start_worker(double)
    client = AsyncClient(server, session_id=unique("session"))
    started: queue.Queue[str] = queue.Queue()

    class Stuck(Model):
        async def send(self, message: str) -> str:
            if not self.messages:
                started.put(message)
                self.messages.append("")
                await asyncio.Event().wait()  # until cancelled
            return await super().send(message)

    model = Stuck()
    agent = AsyncAgent(model, client, batch_window=0, digest=False)

    async def first() -> str:
        quiet.watch()
        await agent.start()
        ack = await agent.submit(name, {"n": 4})
        assert ack.task_id in await asyncio.to_thread(started.get, timeout=EVENT_TIMEOUT)
        return ack.task_id

    async def second(task_id: str) -> None:
        quiet.watch()
        assert agent.acked_seq == 0
        await agent.start()
        await model.until(task_id)
        await agent.send("bye")
        assert agent.acked_seq == 1
        await agent.close()
        await client.close()

    task_id = asyncio.run(first())
    gc.collect()
    asyncio.run(second(task_id))
    once_each(model.messages, [task_id])
    quiet.check()


def test_a_worker_task_serves_loop_after_loop(server: str, quiet: Quiet) -> None:
    # Its run_async task, left running as asyncio.run ended, was cancelled and
    # recorded CancelledError as the error that stopped it for good: the
    # next loop's wait_registered raised it.
    double, name = double_tool()
    worker = Worker(server, tools=[double])

    async def one(n: int) -> None:
        quiet.watch()
        serving = asyncio.ensure_future(worker.run_async())  # left running
        assert await asyncio.to_thread(worker.wait_registered, EVENT_TIMEOUT, count=n)
        async with AsyncClient(server) as client:
            assert await client.submit(name, {"n": n}, wait=True) == 2 * n
        assert not serving.done()

    for n in (1, 2, 3):
        asyncio.run(one(n))
        gc.collect()
        assert worker.error is None
    quiet.check()
