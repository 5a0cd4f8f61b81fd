"""How results reach `AsyncAgent` (not public): from a manager's thread or
the agent's stream.

A manager calls `on_result` (the agent's completion callback) on its own
thread. The result is handed to the agent's event loop (`_hand_in`, which
waits while `max_pending` results are held there); before the agent is
bound to a loop, or after its loop ended, it is held (`_early`) for the
next start. An agent not started yet starts itself at a manager's first
result, as the seed's delivers at once (`_start_for_result`): on the event
loop it was made in (once that has ended, at the agent's next use), or on
a private loop when it was made outside any, as a blocking `start()` would.
A client's session stream is read by `_listen`.

Either way each result goes on to `TurnLoop.on_completion` (`errand._turns`),
delivered at once when idle, else queued.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any, Optional, Union

from errand._agent_loops import LoopBound
from errand._loop import running_loop
from errand.aio import AsyncSessionEventStream
from errand.manager import AsyncTaskResult
from errand.types import Completion, Progress

log = logging.getLogger("errand.agent")


class ResultIntake(LoopBound):
    """Takes results into `AsyncAgent`, from any thread (see the module doc)."""

    #: The epochs (see `TurnLoop._undelivered`) of the agent's own stream:
    #: one more at each reset its reader takes.
    _stream_epochs: int

    def on_result(self, result: Union[AsyncTaskResult, Completion]) -> None:
        """Take one result, from any thread (the manager's callback calls this).

        Delivered at once when the agent is idle, else queued, as in the seed;
        held for the start by an agent not started yet. Blocks the calling
        thread while `max_pending` results wait.
        """
        completion = result.completion if isinstance(result, AsyncTaskResult) else result
        if self._closed:
            return
        if self.manager is not None:
            # Given out after the manager's `_given_resets()` resets: its
            # epoch (a hand-over's: when it was taken), see `_received`.
            self._epoch_of[id(completion)] = self.manager._given_resets()
        with self._early_lock:
            # Not started yet (or its loop ended): hold it for the start, and
            # hold the caller (the manager's stream) while max_pending wait,
            # rather than grow.
            while self._unstarted() and len(self._early) >= self.max_pending:
                if self._closed:
                    return
                self._early_lock.wait(1.0)
            loop = self._loop
            if loop is None or loop.is_closed():
                self._early.append(completion)
                start = loop is None and not self._starting and not self._closed
                self._starting = self._starting or start
            else:
                # Until taken in: if the loop ends first, `_unbind` keeps it.
                self._arriving[id(completion)] = completion
        if loop is None or loop.is_closed():
            if start:
                self._start_for_result()
            return
        if running_loop() is loop:
            task = asyncio.ensure_future(self._hand_in(completion, loop))
            self._handoffs.add(task)
            task.add_done_callback(self._handoffs.discard)
            return
        try:
            handed = asyncio.run_coroutine_threadsafe(self._hand_in(completion, loop), loop)
        except RuntimeError:
            return  # the loop closed: `_check_loop` keeps it at the next use
        while True:  # wait for room (max_pending), but not on a loop that stopped
            try:
                handed.result(timeout=1.0)
                return
            except concurrent.futures.TimeoutError:
                if self._closed or not loop.is_running():
                    handed.cancel()
                    return
            except (concurrent.futures.CancelledError, RuntimeError):
                return

    def _unstarted(self) -> bool:
        loop = self._loop
        return loop is None or loop.is_closed()

    async def _hand_in(self, completion: Completion, loop: asyncio.AbstractEventLoop) -> None:
        """`on_completion` on `loop`, unless the agent has left it meanwhile
        (it holds the completion for its next loop then: see `_unbind`)."""
        if self._loop is loop and not self._closed:
            await self.on_completion(completion)

    def _start_for_result(self) -> None:
        """A manager gave a result to an agent not started: start it, so that
        it delivers at once when idle, as the seed's does. Made inside an
        event loop, it starts there (still running); else on a private loop,
        as a blocking `start()` would (the caller, the manager's listener,
        waits for that). A start that fails is logged; the next `start()`,
        `send()` or result tries again."""
        made_in = self._made_in
        try:
            if made_in is not None:
                if made_in.is_closed() or not made_in.is_running() or made_in is self._left:
                    # Ended: the result waits for the agent's next use.
                    self._started_or_failed(None)
                    return
                if running_loop() is made_in:
                    task = asyncio.ensure_future(self._start_quietly())
                    self._handoffs.add(task)
                    task.add_done_callback(self._handoffs.discard)
                    task.add_done_callback(self._started_or_not)
                else:
                    future = asyncio.run_coroutine_threadsafe(self._start_quietly(), made_in)
                    future.add_done_callback(self._started_or_not)
                return
            self.start()
        except Exception as exc:
            self._started_or_failed(exc)

    async def _start_quietly(self) -> None:
        await self._start()

    def _started_or_not(self, future: Any) -> None:
        if future.cancelled():
            self._started_or_failed(None)
        elif future.exception() is not None:
            self._started_or_failed(future.exception())

    def _started_or_failed(self, exc: Optional[BaseException]) -> None:
        with self._early_lock:
            self._starting = False
        if exc is not None:
            log.warning("errand AsyncAgent: starting at a first result failed: %s", exc)

    async def _listen(self, stream: AsyncSessionEventStream) -> None:
        try:
            async for event in stream:
                if isinstance(event, Progress):
                    await self.on_progress(event)
                    continue
                if stream.resets != self._stream_resets:
                    # The server lost the session's completions: its seqs
                    # start again; this one is the first of a new epoch.
                    self._stream_resets = stream.resets
                    self._stream_epochs += 1
                self._epoch_of[id(event)] = self._stream_epochs
                await self.on_completion(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = exc
            log.error("errand AsyncAgent: completion stream failed: %s", exc)
