"""How `AsyncAgent` runs on event loops (not public): from asyncio or from
blocking code, on one loop after another.

`_dual` makes each of the agent's calls (`start`, `send`, `drain`, `submit`,
`close`) work both ways: inside the agent's event loop it returns the
coroutine, to await; outside any loop it runs it on the agent's loop (a
private `LoopThread` when it has none) and blocks. A use from a second loop
while the first still runs raises RuntimeError (`_check_loop`).

`_start` binds the agent to the running loop: its events, the results a
manager gave it before (`_early`), its turn loop and its stream's reader
there. An agent left open as that loop ends (one `asyncio.run` after
another) leaves the loop as it ends (`errand._loop.LoopEnd` calls `_leave`:
its tasks end there) and starts again on the next loop that uses it, keeping
what it held (`_unbind`): its stream goes on after its last item, and
results queued, cut short in a turn or given by a manager meanwhile are
delivered there, once. A loop closed without shutting down its async
generators is left at the agent's next use (`_check_loop`).

`close` ends everything the agent started within `CLOSE_TIMEOUT` seconds.

How results reach the agent (a manager's callback, the stream's reader) is
`errand._agent_intake`; the turns themselves are `errand._turns`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Coroutine
from typing import Any, Callable, Optional, TypeVar

from errand._digest import drives, stops
from errand._loop import LoopEnd, LoopThread, running_loop
from errand._turns import TurnLoop
from errand.aio import AsyncSessionEventStream
from errand.errors import ClosedError
from errand.types import Completion

log = logging.getLogger("errand.agent")

T = TypeVar("T")
B = TypeVar("B", bound="LoopBound")

#: Most seconds `AsyncAgent.close()` waits, in all, for what the agent runs
#: to end (the stream's reader, the turn loop, its own calls); what has not
#: ended by then is cancelled and left.
CLOSE_TIMEOUT = 5.0


class LoopBound(TurnLoop):
    """`AsyncAgent` bound to one event loop at a time (see the module doc)."""

    #: What has the agent leave `_loop` as that loop ends (see `_leave`).
    _loop_end: Optional[LoopEnd]
    #: The last loop the agent left as it ended (it is not started there again).
    _left: Optional[asyncio.AbstractEventLoop]
    #: The private loop of blocking use (see `_dual`).
    _own_loop: Optional[LoopThread]
    _start_lock: threading.Lock
    #: Results from the manager before a loop was bound (at most max_pending),
    #: and the lock that guards them and the binding (`_loop`, `_arriving`, `_starting`).
    _early: list[Completion]
    _early_lock: threading.Condition
    #: A start for a manager's result is under way (see `_start_for_result`).
    _starting: bool
    #: The loop a manager's result starts the agent on (None: a private one).
    _made_in: Optional[asyncio.AbstractEventLoop]
    _stream: Optional[AsyncSessionEventStream]
    _listener: Optional[asyncio.Task[None]]
    _runner: Optional[asyncio.Task[None]]
    #: Results being handed to the agent's loop, and starts it runs there.
    _handoffs: set[asyncio.Task[None]]
    include_progress: bool
    _after_seq: int

    def _start_for_result(self) -> None:
        raise NotImplementedError  # ResultIntake's

    async def _listen(self, stream: AsyncSessionEventStream) -> None:
        raise NotImplementedError  # ResultIntake's

    def _dual(self, make: Callable[[], Coroutine[Any, Any, T]]) -> Any:
        """Inside the agent's event loop: the coroutine, to await. Outside any
        loop: run it on the agent's loop (a private one if none) and block."""
        running = running_loop()
        self._check_loop(running)
        if running is not None:
            made_in = self._made_in
            if (
                self._loop is None
                and self.manager is not None
                and made_in is not None
                and made_in is not running
                and (made_in is self._left or made_in.is_closed())
            ):
                # Used on a loop after the one it was made in, or left, has
                # ended: a manager's results start it here from now on,
                # those that waited meanwhile now.
                self._made_in = running
                with self._early_lock:
                    waiting = bool(self._early) and not self._starting and not self._closed
                    self._starting = self._starting or waiting
                if waiting:
                    self._start_for_result()
            return make()
        with self._start_lock:
            if self._loop is None:
                self._own_loop = LoopThread()
                try:
                    self._own_loop.call(self._start())
                except BaseException:
                    # Not started (no server, say): a retry starts afresh, on a
                    # loop of its own; the client's channel on this one goes too.
                    self._end_own_loop()
                    raise
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result()

    def _check_loop(self, running: Optional[asyncio.AbstractEventLoop]) -> None:
        """Before a use on `running` (None: blocking use): RuntimeError when
        the agent runs on another event loop that is still open. One that
        closed without shutting down its async generators, so that `_leave`
        never ran there (`asyncio.run` and `asyncio.Runner` do), is left now."""
        loop = self._loop
        if loop is None or loop is running:
            return
        if not loop.is_closed():
            if running is not None:
                raise RuntimeError("this AsyncAgent runs on another event loop")
            return  # blocking use: it runs on that loop
        self._unbind(loop)

    def start(self) -> Any:
        """Start delivering (`await agent.start()`, or blocking outside asyncio).

        Raises Unavailable("no errand server at ADDR") when nothing answers
        at the client's (or the manager's) target, as their first call does.
        A start that failed may be tried again, with the same agent and
        client: outside asyncio each attempt runs on a private loop of its
        own, and a failed one's loop ends with the client's channel on it
        (the client makes a new one on the next loop; see `AsyncClient`).
        """
        return self._dual(self._start)

    async def _start(self: B) -> B:
        if self._closed:
            raise ClosedError("the AsyncAgent is closed")
        if self._loop is not None:  # started, or starting (set before any await below)
            return self
        if self.client is not None:
            # No server ever reached at the client's target: Unavailable now,
            # as the first call would, rather than a stream that waits for ever.
            await self.client._reach("SessionEvents")
            if self._loop is not None:  # another start finished meanwhile
                return self
            if self._closed:
                raise ClosedError("the AsyncAgent is closed")
        self._wake = asyncio.Event()
        self._user_arrived = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._no_calls = asyncio.Event()
        self._no_calls.set()
        loop = asyncio.get_running_loop()
        if loop is self._left:
            raise RuntimeError("this AsyncAgent's event loop is ending")
        with self._early_lock:
            self._loop = loop
            early, self._early = self._early, []
            self._early_lock.notify_all()
        # As the loop ends (asyncio.run's end), the agent leaves it, and
        # starts again on the next loop it is used on.
        self._loop_end = LoopEnd(lambda: self._leave(loop))
        drives(self)  # `errand_pending` in this process counts as this agent does
        for completion in early:
            await self.on_completion(completion)
        self._runner = asyncio.ensure_future(self._run())
        if self._results or self._users:
            self._wake.set()  # what an earlier loop left undelivered
        if self.client is not None:
            if self._stream is None:
                self._stream = self.client.session_events(
                    self.session_id,
                    after_seq=self._after_seq,
                    include_progress=self.include_progress,
                    fallback=True,  # a server without SessionEvents: its Completions
                )
                self._stream_resets = self._stream.resets
            # else the stream of an earlier loop goes on after its last item
            self._listener = asyncio.ensure_future(self._listen(self._stream))
        elif self.manager is not None:
            await asyncio.to_thread(self.manager.ensure_started)
        return self

    def close(self) -> Any:
        """Stop delivering (awaitable, or blocking outside asyncio). Pending
        `send`s fail with ClosedError.

        Ends everything the agent started, quietly, within `CLOSE_TIMEOUT`
        seconds (5) in all: the stream's reader sees its stream end, a turn
        in progress and the results being handed over are cancelled, but
        first the agent's own calls in flight (PendingDigest, AckCompletions)
        are let finish rather than cancelled mid-call (each is also bounded by
        the client's per-call timeout). Whatever is still running at the
        deadline is cancelled and left.
        """
        running = running_loop()
        self._check_loop(running)
        if self._loop is None:
            # Not started, or its loop has ended (see `_leave`): nothing runs.
            self._closed = True
            stops(self)
            if self._stream is not None:
                self._stream._closed.set()  # its call ended with its loop
            if self.manager is not None:
                self.manager.remove_done_callback(self._owner)
                self.manager.remove_progress_callback(self._progress_from_thread)
            return _done() if running is not None else None
        result = self._dual(self._close)
        if self._own_loop is not None and running_loop() is None:
            self._end_own_loop()
        return result

    def _end_own_loop(self) -> None:
        """Ends the private loop of blocking use, and first the client's
        channel on it (`AsyncClient._leave_loop`): the client outlives the
        loop, and its next use, on another loop, makes a channel there."""
        own, self._own_loop = self._own_loop, None
        if own is None:
            return
        if self.client is not None:
            try:
                own.call(self.client._leave_loop())
            except Exception as exc:  # the loop is ended below all the same
                log.warning("errand AsyncAgent: closing the client's channel failed: %s", exc)
        own.close()

    async def _close(self) -> None:
        self._closed = True
        stops(self)
        if self._loop_end is not None:
            self._loop_end.forget()  # ended here, not by the loop's end
            self._loop_end = None
        if self.manager is not None:
            self.manager.remove_done_callback(self._owner)
            self.manager.remove_progress_callback(self._progress_from_thread)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_TIMEOUT
        if self._stream is not None:
            await self._stream.aclose()
        if self._no_calls is not None:
            # The agent's own calls in flight finish first (see `_own_call`;
            # none starts from now on), for the same reason as the reader.
            try:
                await asyncio.wait_for(self._no_calls.wait(), _left(loop, deadline))
            except asyncio.TimeoutError:
                pass  # a server that does not answer: cancelled below
        if self._listener is not None and self._stream is not None:
            # Let the listener see the stream end rather than cancel it:
            # a cancelled read leaves its gRPC operation in flight, and
            # when that completes after the loop closed, gRPC's poller
            # fails with "Event loop is closed" on another loop.
            await asyncio.wait({self._listener}, timeout=min(1.0, _left(loop, deadline)))
        for task in (self._listener, self._runner, *self._handoffs):
            if task is not None:
                await _cancel(task, loop, deadline)
        while self._users:
            turn = self._users.popleft()
            if not turn.future.done():
                turn.future.set_exception(ClosedError("the AsyncAgent was closed"))
        self._release_drained()

    async def _leave(self, loop: asyncio.AbstractEventLoop) -> None:
        """As `loop` ends (its async generators shut down: `LoopEnd`), while it
        still runs: what the agent runs there ends (asyncio.run has
        cancelled it already), and the agent is no longer bound to it.
        Nothing it holds is lost: results queued, or taken back from a turn
        cut short, and those whose hand-over was cut short wait for the next
        loop the agent is used on, which starts it again there (its stream
        goes on after its last item; see `AsyncClient`)."""
        if self._loop is not loop or self._closed:
            return
        self._left = loop
        self._loop_end = None  # running now: nothing to forget
        deadline = loop.time() + CLOSE_TIMEOUT
        for task in (self._listener, self._runner, *self._handoffs):
            if task is not None:
                await _cancel(task, loop, deadline)
        self._unbind(loop)

    def _unbind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The agent no longer runs on `loop` (ended, or closed): it keeps its
        results for the next loop, and drops what belonged to this one."""
        end, self._loop_end = self._loop_end, None
        if end is not None:
            end.forget()
        with self._early_lock:
            if self._loop is not loop:
                return
            self._loop = None
            self._left = loop
            # What was being handed over, and results not taken in yet, first.
            arriving = list(self._arriving.values())
            self._arriving.clear()
            self._early = sorted([*arriving, *self._early], key=lambda c: c.seq)
            self._starting = False
            # A manager's result does not start it again on a private loop:
            # it waits for the agent's next use (see `_start_for_result`).
            self._made_in = loop
            self._early_lock.notify_all()
        self._busy = False
        self._wake = self._user_arrived = self._space = self._no_calls = None
        self._listener = self._runner = None
        self._handoffs = set()
        self._calls = 0
        users, self._users = list(self._users), deque()
        waiters, self._drained = self._drained, []
        for future in [t.future for t in users] + waiters:
            try:
                future.cancel()  # their callers were that loop's, cancelled
            except RuntimeError:
                pass  # a loop closed: nothing awaits them

    async def __aenter__(self: B) -> B:
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        await self._close()


def _left(loop: asyncio.AbstractEventLoop, deadline: float) -> float:
    return max(deadline - loop.time(), 0.0)


async def _cancel(
    task: asyncio.Future[Any], loop: asyncio.AbstractEventLoop, deadline: float
) -> None:
    """Cancels `task` until it ends or `deadline` passes, and retrieves its
    outcome. Cancelled again while it lasts: a turn can swallow one
    cancellation (on Python < 3.12, asyncio.wait_for does when its inner
    await ends at the same moment) and carry on to its next wait."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=min(1.0, _left(loop, deadline)))
        if loop.time() >= deadline:
            break
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: ended with an error or normally


async def _noop() -> None:
    return None


def _done() -> Coroutine[Any, Any, None]:
    return _noop()
