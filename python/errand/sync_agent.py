"""`SyncAgent`: `AsyncAgent` for blocking code, every method a plain call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, TypeVar, Union

from errand._loop import LoopThread
from errand.agent import Agent, AsyncAgent
from errand.aio import AsyncClient
from errand.client import Client
from errand.manager import AsyncToolManager
from errand.types import Ack, Completion

__all__ = ["SyncAgent"]

M = TypeVar("M")


class SyncAgent:
    """`AsyncAgent` for blocking code: every method is a plain, blocking call.

        manager = AsyncToolManager(max_workers=4)
        agent = SyncAgent(my_agent, manager)       # or SyncAgent(my_agent, Client(...))
        reply = agent.send("Research tides for me.")
        ...
        agent.close()

    The agent runs on a private event loop thread; `my_agent.send` may be a
    plain method (the seed's style) or a coroutine function. Takes the
    `AsyncAgent` options as keywords.
    """

    def __init__(self, agent: Agent, source: Union[Client, AsyncToolManager], **options: Any):
        self._own_client: Optional[AsyncClient] = None
        if isinstance(source, AsyncToolManager):
            self.inner = AsyncAgent(agent, source, **options)
            self.inner.start()
            return
        if not isinstance(source, Client):
            raise TypeError(
                "SyncAgent(agent, source): source must be a Client or an AsyncToolManager; "
                f"got {type(source).__name__} (in asyncio code use AsyncAgent)"
            )
        loop = LoopThread()
        client = source

        async def make() -> AsyncAgent:
            own = AsyncClient(
                session_id=client.session_id,
                timeout=client.timeout,
                _connection=client._core.conn,
            )
            self._own_client = own
            inner = AsyncAgent(agent, own, **options)
            inner._own_loop = loop
            return await inner._start()

        self.inner = loop.call(make())

    @property
    def pending(self) -> list[Completion]:
        return self.inner.pending

    @property
    def delivered(self) -> list[Completion]:
        return self.inner.delivered

    def send(self, message: str) -> Any:
        """Run the user's turn (ahead of pending results) and return the agent's reply."""
        return self.inner.send(message)

    def submit(self, tool: str, arguments: Optional[Mapping[str, Any]] = None, /, **kw: Any) -> Ack:
        ack: Ack = self.inner.submit(tool, arguments, **kw)
        return ack

    def drain(self) -> None:
        self.inner.drain()

    def prune(self, history: Sequence[M], *, keep_last: int = 0) -> list[M]:
        return self.inner.prune(history, keep_last=keep_last)

    def close(self) -> None:
        own = self._own_client
        loop = self.inner._own_loop
        if own is not None and loop is not None:
            loop.call(self.inner._close())
            loop.call(own.close())
        self.inner.close()

    def __enter__(self) -> SyncAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
