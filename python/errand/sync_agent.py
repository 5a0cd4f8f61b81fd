"""`SyncAgent`: `AsyncAgent` for blocking code, every method a plain call."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Callable, Optional, TypeVar, Union

from errand._loop import LoopThread
from errand.agent import Agent, AsyncAgent
from errand.aio import AsyncClient
from errand.client import Client
from errand.history import default_stub
from errand.manager import AsyncTaskResult, AsyncToolManager
from errand.types import Ack, Completion, Progress

__all__ = ["SyncAgent"]

M = TypeVar("M")
T = TypeVar("T")


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
        if not isinstance(source, (Client, AsyncToolManager)):
            raise TypeError(
                "SyncAgent(agent, source): source must be a Client or an AsyncToolManager; "
                f"got {type(source).__name__} (in asyncio code use AsyncAgent)"
            )
        self._loop = LoopThread()
        self._own_client: Optional[AsyncClient] = None

        async def make() -> AsyncAgent:
            if isinstance(source, AsyncToolManager):
                inner = AsyncAgent(agent, source, **options)
            else:  # an AsyncClient of the same connection and session, on this loop
                self._own_client = AsyncClient(
                    session_id=source.session_id,
                    timeout=source.timeout,
                    _connection=source._core.conn,
                )
                inner = AsyncAgent(agent, self._own_client, **options)
            return await inner._start()

        try:
            self.inner = self._loop.call(make())
        except BaseException:  # no server there, say: Unavailable
            if self._own_client is not None:
                self._loop.call(self._own_client.close())
            self._loop.close()
            raise

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.call(coro)

    @property
    def pending(self) -> list[Completion]:
        return self.inner.pending

    @property
    def delivered(self) -> list[Completion]:
        return self.inner.delivered

    @property
    def silent(self) -> list[Completion]:
        """SILENT results waiting to lead the next user message."""
        return self.inner.silent

    @property
    def acked_seq(self) -> int:
        """The seq up to which every result was delivered and acknowledged."""
        return self.inner.acked_seq

    @property
    def queue(self) -> list[Completion]:
        """The seed's name for `pending`."""
        return self.inner.queue

    @property
    def busy(self) -> bool:
        """True while a turn (a `send` or a delivery) is running."""
        return self.inner.busy

    @property
    def state(self) -> str:
        """The seed's state machine: "busy", "queued" or "idle" (see `AsyncAgent.state`)."""
        return self.inner.state

    @property
    def last_seq(self) -> int:
        """Seq of the last completion received (persist it to resume with after_seq)."""
        return self.inner.last_seq

    def is_idle(self) -> bool:
        """No turn runs and the wrapped agent (if it says) is idle."""
        return self.inner.is_idle()

    def start(self) -> SyncAgent:
        """Start delivering. A `SyncAgent` starts when it is made: this only
        checks it is not closed (ClosedError) and returns it."""
        self._call(self.inner._start())
        return self

    def on_result(self, result: Union[AsyncTaskResult, Completion]) -> None:
        """Take one result, from any thread: delivered at once when the agent
        is idle, else queued, as in the seed (see `AsyncAgent.on_result`)."""
        self.inner.on_result(result)

    def on_completion(self, completion: Completion) -> None:
        """Take one completion: deliver now if idle, else queue; returns once
        it is taken (waits while `max_pending` results are held)."""
        self._call(self.inner.on_completion(completion))

    def on_progress(self, progress: Progress) -> None:
        """A running task's progress: to `on_status("progress", [progress])`."""
        self._call(self.inner.on_progress(progress))

    def send(self, message: str) -> Any:
        """Run the user's turn (ahead of pending results) and return the agent's reply."""
        if not isinstance(message, str):
            raise TypeError(f"send() takes the user's message as a str, not {type(message)!r}")
        return self._call(self.inner._send(message))

    def submit(self, tool: str, arguments: Optional[Mapping[str, Any]] = None, /, **kw: Any) -> Ack:
        """Submit a tool call in the agent's session."""
        return self._call(self.inner._submit(tool, dict(arguments or {}), kw))

    def drain(self) -> None:
        """Deliver queued results now, if the agent is idle."""
        self._call(self.inner._drain())

    def drain_queue(self) -> None:
        """The seed's name for `drain`."""
        self.drain()

    def prune(
        self,
        history: Sequence[M],
        *,
        keep_results: Optional[int] = None,
        keep_last: int = 0,
        stub: Callable[[Completion], str] = default_stub,
    ) -> list[M]:
        """See `AsyncAgent.prune`."""
        return self.inner.prune(history, keep_results=keep_results, keep_last=keep_last, stub=stub)

    def close(self) -> None:
        """Stop delivering, close what the wrapper opened, end its loop thread."""
        if self._loop.loop.is_closed():
            return
        self._call(self.inner._close())
        if self._own_client is not None:
            self._call(self._own_client.close())
        self._loop.close()

    def __enter__(self) -> SyncAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
