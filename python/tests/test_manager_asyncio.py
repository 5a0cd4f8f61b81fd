"""`AsyncToolManager` from asyncio code: `async def` tools stay native, `AsyncAgent` hops
the manager's callbacks into the caller's loop, and the notice matches the server's."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

from errand import AsyncAgent, AsyncClient, AsyncToolManager, Completion, async_tool
from errand.callables import ASYNC_NOTICE

from .conftest import EVENT_TIMEOUT, unique


def test_async_tools_and_an_async_agent_on_a_manager(server: str) -> None:
    manager = AsyncToolManager(max_workers=2, session_id=unique("session"))
    release = threading.Event()
    ran_on_loop: list[bool] = []

    @async_tool(manager)
    async def lookup(term: str) -> str:
        """Look a term up."""
        ran_on_loop.append(asyncio.current_task() is not None)  # native, not on a thread
        await asyncio.get_running_loop().run_in_executor(None, release.wait, EVENT_TIMEOUT)
        return f"{term}: found"

    assert inspect.iscoroutinefunction(lookup)
    assert inspect.iscoroutinefunction(lookup.run)  # type: ignore[attr-defined]

    class Agent:
        def __init__(self) -> None:
            self.received: asyncio.Queue[str] = asyncio.Queue()

        async def send(self, message: str) -> str:
            await self.received.put(message)
            return "ok"

    async def scenario() -> None:
        agent = Agent()
        delivered: asyncio.Queue[list[Completion]] = asyncio.Queue()

        def on_status(status: str, completions: list[Completion]) -> None:
            if status == "delivered":
                delivered.put_nowait(completions)

        # digest=False: "hello" is checked word for word (see tests/test_model_sees.py).
        async with AsyncAgent(agent, manager, on_status=on_status, digest=False) as async_agent:
            ack = await asyncio.wait_for(lookup(term="tides"), EVENT_TIMEOUT)
            assert ack.startswith("Task ") and "lookup" in ack
            submitted = await async_agent.submit("lookup", term="moons")
            assert await async_agent.send("hello") == "ok"
            assert await asyncio.wait_for(agent.received.get(), EVENT_TIMEOUT) == "hello"
            release.set()
            got: list[str] = []
            while len(got) < 2:
                batch = await asyncio.wait_for(delivered.get(), EVENT_TIMEOUT)
                got.extend(c.task_id for c in batch)
            assert sorted(got) == sorted([ack.split()[1], submitted.task_id])
            texts = []
            while not agent.received.empty():
                texts.append(agent.received.get_nowait())
            assert "tides: found" in "\n".join(texts) and "moons: found" in "\n".join(texts)

    try:
        asyncio.run(scenario())
        assert ran_on_loop == [True, True]
    finally:
        manager.stop()


def test_the_async_notice_is_the_servers(server: str) -> None:
    manager = AsyncToolManager(max_workers=1)

    @async_tool(manager)
    def noted(x: int) -> int:
        """Return x."""
        return x

    async def listed() -> Any:
        async with AsyncClient(server) as client:
            return await client.tool("noted")

    try:
        manager.start()
        remote = asyncio.run(listed())
        # The server appends its notice to the description; the local callable
        # carries the same words, so a model sees one text either way.
        assert remote.__doc__ == noted.__doc__
        assert noted.__doc__ is not None and noted.__doc__.endswith(ASYNC_NOTICE)
    finally:
        manager.stop()


def test_an_agent_on_a_manager_passes_submit_options_as_options(server: str) -> None:
    """`agent.submit(tool, x=1, timeout_ms=...)`: the submit's own options by name, the
    rest as arguments, with a manager as with a client."""
    manager = AsyncToolManager(max_workers=1, session_id=unique("session"))

    @async_tool(manager)
    def echo(x: int) -> int:
        return x

    class Agent:
        async def send(self, message: str) -> str:
            return "ok"

    async def scenario() -> None:
        async with AsyncAgent(Agent(), manager) as agent:
            ack = await agent.submit("echo", x=1, timeout_ms=7000)
            assert ack.task.arguments == {"x": 1} and ack.task.timeout_ms == 7000

    try:
        asyncio.run(asyncio.wait_for(scenario(), EVENT_TIMEOUT))
    finally:
        manager.stop()
