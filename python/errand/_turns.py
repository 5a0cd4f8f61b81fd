"""The turn loop of `AsyncAgent` (not public): who speaks next, and what is said.

One task runs the agent's turns one at a time. At each turn boundary:

1. a pending user message goes first (with the results that arrived before
   it, after its text, when `results_with_user`);
2. else pending results go, in one message, if the agent is idle: right
   away after a busy spell, or after a `batch_window` that gathers the
   results arriving together (cut short by a user message);
3. else it waits to be woken (a result, a user message, `drain()`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, Callable, Optional

from errand.aio import AsyncClient
from errand.types import Completion

log = logging.getLogger("errand.agent")

#: The status names passed to `on_status`.
QUEUED = "queued"
DRAINING = "draining"
DELIVERED = "delivered"


class _UserTurn:
    def __init__(self, message: str, future: asyncio.Future[Any]) -> None:
        self.message = message
        self.future = future


class TurnLoop:
    """The state and turn logic `AsyncAgent` is built on (see the module doc)."""

    agent: Any
    client: Optional[AsyncClient]
    session_id: str
    on_status: Optional[Callable[[str, Sequence[Completion]], Any]]
    ack: bool
    format_batch: Callable[[Sequence[Completion]], str]
    results_with_user: bool
    format_user: Callable[[str, str], str]
    batch_window: float
    last_error: Optional[BaseException]
    _results: deque[Completion]
    _users: deque[_UserTurn]
    _delivered: deque[Completion]
    _delivered_texts: deque[str]
    _queued_while_busy: bool
    _busy: bool
    _closed: bool
    _wake: Optional[asyncio.Event]
    _user_arrived: Optional[asyncio.Event]
    _space: Optional[asyncio.Event]
    _drained: list[asyncio.Future[None]]

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while not self._closed:
                if self._users:
                    await self._user_turn(self._users.popleft())
                elif self._results and self._agent_idle():
                    if not self._queued_while_busy and self.batch_window > 0:
                        await self._gather()
                        if self._users:
                            continue  # the user came in meanwhile: the user first
                    if not await self._results_turn():
                        break
                else:
                    break
            self._release_drained()

    async def _gather(self) -> None:
        """Let results that come with the first one join its message (or a user's)."""
        assert self._user_arrived is not None
        self._user_arrived.clear()
        try:
            await asyncio.wait_for(self._user_arrived.wait(), self.batch_window)
        except asyncio.TimeoutError:
            pass

    def _take_results(self) -> list[Completion]:
        assert self._space is not None
        batch = list(self._results)
        self._results.clear()
        self._space.set()
        self._queued_while_busy = False
        return batch

    async def _user_turn(self, turn: _UserTurn) -> None:
        batch = self._take_results() if self.results_with_user and self._results else []
        text = self.format_batch(batch) if batch else ""
        message = self.format_user(turn.message, text) if batch else turn.message
        if batch:
            await self._status(DRAINING, batch)
        self._busy = True
        try:
            reply = await self._call_agent(message)
        except BaseException as exc:
            self._results.extendleft(reversed(batch))
            if not turn.future.done():
                turn.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            self._busy = False
        if not turn.future.done():
            turn.future.set_result(reply)
        if batch:
            await self._record(batch, text)

    async def _results_turn(self) -> bool:
        """Deliver everything pending as one message; False when the agent failed."""
        draining = self._queued_while_busy
        batch = self._take_results()
        if draining:
            await self._status(DRAINING, batch)
        text = self.format_batch(batch)
        self._busy = True
        try:
            await self._call_agent(text)
        except Exception as exc:
            self._results.extendleft(reversed(batch))  # kept for the next turn
            self.last_error = exc
            log.error("errand AsyncAgent: delivery failed: %s", exc)
            return False
        finally:
            self._busy = False
        await self._record(batch, text)
        return True

    async def _record(self, batch: list[Completion], text: str) -> None:
        self._delivered.extend(batch)
        self._delivered_texts.append(text)
        await self._status(DELIVERED, batch)
        if self.ack and self.client is not None:
            try:
                await self.client.ack_completions(
                    max(c.seq for c in batch), session_id=self.session_id
                )
            except Exception as exc:  # the results are delivered; acking is an optimisation
                log.warning("errand AsyncAgent: AckCompletions failed: %s", exc)

    def _release_drained(self) -> None:
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _call_agent(self, message: str) -> Any:
        send = self.agent.send
        if inspect.iscoroutinefunction(send):
            return await send(message)
        result = await asyncio.to_thread(send, message)
        if inspect.isawaitable(result):
            return await result
        return result

    def _agent_idle(self) -> bool:
        is_idle = getattr(self.agent, "is_idle", None)
        return bool(is_idle()) if callable(is_idle) else True

    async def _status(self, status: str, completions: list[Completion]) -> None:
        if self.on_status is None:
            return
        try:
            result = self.on_status(status, list(completions))
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.warning("errand AsyncAgent: on_status(%s) raised: %s", status, exc)
