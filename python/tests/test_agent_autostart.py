"""AsyncAgent(agent, manager) delivers as the seed's does: it registers as the
manager's callback when made and delivers a result at once when idle, with
no start() or send() first."""

from __future__ import annotations

import asyncio
import queue

from errand import AsyncAgent, AsyncToolManager, async_tool

from .conftest import EVENT_TIMEOUT, unique


def test_a_blocking_async_agent_on_a_manager_delivers_without_start(server: str) -> None:
    manager = AsyncToolManager(max_workers=2, target=server)

    @async_tool(manager, name=unique("double"))
    def double(n: int) -> int:
        return 2 * n

    class Agent:
        def __init__(self) -> None:
            self.inbox: queue.Queue[str] = queue.Queue()

        def send(self, message: str) -> str:
            self.inbox.put(message)
            return "ok"

    model = Agent()
    agent = AsyncAgent(model, manager)
    try:
        task = double.submit(n=21).task_id
        delivered = model.inbox.get(timeout=EVENT_TIMEOUT)
        assert task in delivered and "42" in delivered
        assert agent.send("hi") == "ok"  # blocking use goes on, on the same loop
        assert model.inbox.get(timeout=EVENT_TIMEOUT) == "hi"
    finally:
        agent.close()
        manager.stop()


def test_an_async_agent_made_in_a_loop_delivers_there_without_start(server: str) -> None:
    manager = AsyncToolManager(max_workers=2, target=server)

    @async_tool(manager, name=unique("triple"))
    def triple(n: int) -> int:
        return 3 * n

    async def main() -> None:
        inbox: asyncio.Queue[str] = asyncio.Queue()

        class Agent:
            async def send(self, message: str) -> str:
                await inbox.put(message)
                return "ok"

        agent = AsyncAgent(Agent(), manager)
        try:
            task = (await asyncio.to_thread(triple.submit, n=3)).task_id
            delivered = await asyncio.wait_for(inbox.get(), EVENT_TIMEOUT)
            assert task in delivered and "9" in delivered
            async with agent:  # starting it now is harmless
                assert await agent.send("hi") == "ok"
        finally:
            await agent.close()

    try:
        asyncio.run(main())
    finally:
        manager.stop()
