"""The simple cases in one line, fail-fast without a server, tools as callables,
wrong arguments refused with a reason (issue 14, items 2, 4 and 5)."""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
import time
from typing import Any, Callable, Optional

import pytest

from errand import (
    AsyncAgent,
    AsyncClient,
    AsyncToolManager,
    Client,
    DeadlineExceeded,
    NotFound,
    SyncAgent,
    TaskFailed,
    Unavailable,
    Worker,
    async_tool,
)
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, ServerProcess, free_port, unique
from .test_agent import Gates

FAST_S = 2.0  # "fails fast": far below the 30 s call timeout


def no_server() -> str:
    return f"127.0.0.1:{free_port()}"  # a port nothing listens on


def expect_no_server(fn: Callable[[], Any], address: str) -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        fn()
    assert time.monotonic() - started < FAST_S
    assert f"no errand server at {address}: is errand serve running?" in str(caught.value)


def test_no_server_fails_fast_with_a_clear_message(
    server_factory: Callable[..., ServerProcess],
) -> None:
    address = no_server()
    with Client(address) as client:
        expect_no_server(lambda: client.submit("anything", x=1), address)
        expect_no_server(client.list_tools, address)

    async def via_async() -> None:
        async with AsyncClient(address) as client:
            await client.submit("anything")

    expect_no_server(lambda: asyncio.run(via_async()), address)

    @async_tool
    def echo(text: str) -> str:
        return text

    expect_no_server(Worker(address, tools=[echo]).start, address)

    manager = AsyncToolManager(max_workers=1, server=address)

    @async_tool(manager)
    def shout(text: str) -> str:
        return text.upper()

    expect_no_server(lambda: shout("hi"), address)
    # Once a server is there, the same manager works: the next call tries again.
    server_factory("--listen", address, "--store", "memory").start()
    try:
        ack = shout("hi")
        assert manager.result(ack.split()[1], timeout=EVENT_TIMEOUT) == "HI"
    finally:
        manager.stop()


def test_connect_timeout_bounds_the_first_call() -> None:
    with pytest.raises(ValueError, match="connect_timeout"):
        Client(no_server(), connect_timeout=0)


def adder() -> Callable[..., Any]:
    @async_tool(name=unique("add"))
    def add(a: int, b: int = 2, note: Optional[str] = None) -> int:
        """Add two numbers."""
        if a < 0:
            raise ValueError("a must be >= 0")
        return a + b

    return add


def test_result_and_submit_wait_are_one_line(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    add = adder()
    name = tool_def(add).name
    gates = Gates()
    start_worker(add, gates.tool)
    assert client.submit(name, a=1, wait=True) == 3
    ack = client.submit(name, a=40)
    assert client.result(ack.task_id) == 42
    assert client.result(ack.task_id) == 42  # a finished task answers at once
    with pytest.raises(TaskFailed) as failed:
        client.submit(name, a=-1, wait=True)
    assert failed.value.status == "FAILED" and "a must be >= 0" in failed.value.message
    held = client.submit(gates.name, key="never")
    with pytest.raises(DeadlineExceeded, match=r"did not finish within 0\.2s"):
        client.result(held.task_id, timeout=0.2)
    gates.open("never")
    assert client.result(held.task_id, timeout=EVENT_TIMEOUT) == "done never"

    async def via_async() -> None:
        async with AsyncClient(client.target, session_id=client.session_id) as aclient:
            assert await aclient.submit(name, a=5, b=5, wait=True) == 10
            gated = await aclient.submit(gates.name, key="later")
            with pytest.raises(DeadlineExceeded):
                await aclient.result(gated.task_id, timeout=0.2)
            gates.open("later")
            assert await aclient.result(gated.task_id) == "done later"

    asyncio.run(via_async())


def test_remote_tools_are_callables_for_frameworks(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    add = adder()
    name = tool_def(add).name
    start_worker(add)
    tool = client.tool(name)
    assert tool.__name__ == name
    assert tool.__doc__ is not None and tool.__doc__.startswith("Add two numbers.")
    assert "asynchronous" in tool.__doc__
    sig = inspect.signature(tool)
    assert list(sig.parameters) == ["a", "b", "note"]
    assert sig.parameters["a"].annotation is int
    assert sig.parameters["a"].default is inspect.Parameter.empty
    assert sig.parameters["b"].default == 2
    assert sig.parameters["note"].default is None
    assert sig.return_annotation is str
    assert tool.tool_info.input_schema["required"] == ["a"]  # type: ignore[attr-defined]

    started = time.perf_counter()
    text = tool(a=1, b=3)
    assert time.perf_counter() - started < 1.0
    assert isinstance(text, str) and text.startswith("Task ") and name in text
    task_id = text.split()[1]
    assert client.result(task_id, timeout=EVENT_TIMEOUT) == 4
    assert client.get_task(task_id).arguments == {"a": 1, "b": 3}  # None was not sent
    ack = tool.submit(7)  # type: ignore[attr-defined]
    assert client.result(ack.task_id, timeout=EVENT_TIMEOUT) == 9
    with pytest.raises(TypeError):
        tool(1, 2, 3, 4)
    with pytest.raises(TypeError):
        tool(c=1)
    with pytest.raises(NotFound, match="no worker serves the tool 'no_such_tool'"):
        client.tool("no_such_tool")
    assert name in [t.__name__ for t in client.tools()]

    async def via_async() -> None:
        async with AsyncClient(client.target, session_id=client.session_id) as aclient:
            atool = await aclient.tool(name)
            assert inspect.iscoroutinefunction(atool)
            assert inspect.signature(atool) == sig
            answer = await atool(a=2)
            assert await aclient.result(answer.split()[1], timeout=EVENT_TIMEOUT) == 4
            assert name in [t.__name__ for t in await aclient.tools()]

    asyncio.run(via_async())


def test_async_agent_refuses_a_wrong_argument_at_construction(server: str) -> None:
    class Agent:
        def send(self, message: str) -> None:
            pass

    with Client(server) as client, pytest.raises(TypeError, match="not the blocking Client"):
        AsyncAgent(Agent(), client)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AsyncClient or an AsyncToolManager"):
        AsyncAgent(Agent(), "127.0.0.1:7466")  # type: ignore[arg-type]
    manager = AsyncToolManager(max_workers=1)
    with pytest.raises(TypeError, match=r"send\(message\) method"):
        AsyncAgent(object(), manager)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Client or an AsyncToolManager"):
        SyncAgent(Agent(), object())  # type: ignore[arg-type]


def test_sync_agent_for_a_blocking_agent_with_bounded_memory(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    gates = Gates()
    start_worker(gates.tool, max_concurrency=4)

    class BlockingAgent:
        """The seed's style: a plain send()."""

        def __init__(self) -> None:
            self.received: queue.Queue[str] = queue.Queue()
            self.thread_ids: set[int] = set()

        def send(self, message: str) -> str:
            self.received.put(message)
            self.thread_ids.add(threading.get_ident())
            return f"got {len(message)} chars"

    agent = BlockingAgent()
    delivered: queue.Queue[list[str]] = queue.Queue()

    def on_status(status: str, completions: list[Any]) -> None:
        if status == "delivered":
            delivered.put([c.task_id for c in completions])

    with SyncAgent(
        agent, client, keep_delivered=2, batch_window=0, on_status=on_status
    ) as sync_agent:
        assert sync_agent.send("hello") == "got 5 chars"
        assert agent.received.get(timeout=EVENT_TIMEOUT) == "hello"
        acks = [sync_agent.submit(gates.name, key=k) for k in "abc"]
        for k, ack in zip("abc", acks):
            gates.open(k)
            assert ack.task_id in agent.received.get(timeout=EVENT_TIMEOUT)
            assert delivered.get(timeout=EVENT_TIMEOUT) == [ack.task_id]
        # Only the last `keep_delivered` results are remembered.
        assert [c.task_id for c in sync_agent.delivered] == [a.task_id for a in acks[1:]]
        assert sync_agent.pending == []
    assert threading.get_ident() not in agent.thread_ids  # ran off the caller's thread
