"""`AsyncAgent`: deliver a session's async tool results to a conversational agent.

The agent protocol is small. The wrapped object must offer

    send(message: str) -> Any          # plain or `async def`; returns when the turn is over

and may offer

    is_idle() -> bool                  # False while it is busy for reasons of its own
    interrupt(message: str) -> Any     # take a message into the turn now running;
                                       # return False to decline (plain or async def)

`AsyncAgent` takes the session's completions (from an `AsyncClient`'s stream,
or as the completion callback of an `AsyncToolManager`, as in the seed text)
and runs the agent's turns one at a time, in this order:

1. **The user first.** A pending `send(message)` takes the next turn, ahead of
   any results. Results that arrived meanwhile go **in the same message**,
   after the user's text (`results_with_user=True`, the default): the model
   answers its user knowing everything that has arrived, in one turn instead
   of two, and chat APIs get one user message per turn rather than a second
   one right behind it. `prune()` later takes the results' text out of that
   message and keeps the user's words. With `results_with_user=False` they go
   in the turn right after instead. `send()` returns when its own turn ends;
   delivery goes on in the background.
2. **Results at once when idle**, batched: the first result starts a short
   window (`batch_window`, 50 ms) that gathers the others arriving with it
   into one message, each result naming its task ID and tool.
3. **Queued while busy** (a turn is running, or `is_idle()` says False), and
   **drained** as one message after the turn.

Each completion carries the delivery policy the server resolved for it
(the submit's, else the tool's, else the server's default):

- `WHEN_IDLE` (the default): as above.
- `INTERRUPT`: delivered at once when idle (no batch window); when busy,
  through the agent's `interrupt(message)` hook if it has one, else first
  at the next turn boundary (with the user's message, if that comes next).
- `SILENT`: never starts a turn: it leads the next user message.

Before each turn, the session's pending digest (`PendingDigest.text`: what
is still running, how many results are unacknowledged) is prepended when
the server has something to say, its count of unacknowledged results made
the number the model has not been shown (not those in the same message,
nor those shown before), and SILENT ones among them said to come with the
next user message rather than to have arrived; the framework adapters'
`errand_pending` session tool answers by the same rule, with what this agent
has shown its model (the message in its hands included). After the turn the
completions it carried are acknowledged, and never before (on a manager, by
the manager once the agent says it delivered them). Every text the model
reads is the server's, verbatim, but for that sentence.
`prune(history, keep_results=N)` then replaces all but the last N
acknowledged results in a history with a short stub, and takes out the
digests of older turns (only the latest still holds).

`on_status(status, items)` hears "queued", "draining" and "delivered" (with
completions) and "progress" (with one `Progress`: a running task's report,
which never starts a turn).
Memory is bounded: at most `max_pending` results wait (the stream is then
not read further, so the server keeps the rest), and only the last
`keep_delivered` delivered results are remembered.

    async with AsyncClient(addr) as client, AsyncAgent(my_agent, client) as agent:
        await agent.send("Research tides and moons for me.")

Blocking code (the seed's style) uses the same object without asyncio:
`send`, `drain`, `submit`, `start` and `close` block when called outside an
event loop, running the agent on a private loop thread; `errand.SyncAgent`
(in `errand.sync_agent`) is that spelled out with plain signatures.

An agent left open as its event loop ends (one `asyncio.run` after another)
leaves that loop as it ends (`errand._loop.LoopEnd`: its tasks end there)
and starts again on the next loop that uses it, keeping what it held: its
stream goes on after its last item, and results queued, cut short in a turn
or given by a manager meanwhile are delivered there, once. A use from a
second loop while the first still runs raises RuntimeError.

The turn logic itself is in `errand._turns`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Optional,
    Protocol,
    TypeVar,
    Union,
    runtime_checkable,
)

from errand._core import checked_session_id
from errand._loop import LoopEnd, LoopThread, running_loop
from errand._turns import (
    DELIVERED,
    DRAINING,
    PROGRESS,
    QUEUED,
    TurnLoop,
    _UserTurn,
    drives,
    stops,
)
from errand.aio import AsyncClient, AsyncSessionEventStream
from errand.client import Client
from errand.errors import ClosedError
from errand.history import prune_history
from errand.manager import AsyncTaskResult, AsyncToolManager
from errand.types import Ack, Completion, Progress

if TYPE_CHECKING:
    from errand._typing import DualAck

__all__ = [
    "Agent",
    "AsyncAgent",
    "DELIVERED",
    "DRAINING",
    "PROGRESS",
    "QUEUED",
    "default_batch_text",
    "default_user_text",
    "prune_history",
]

log = logging.getLogger("errand.agent")

StatusCallback = Callable[[str, Sequence[Any]], Any]

#: `Client.submit`'s options (the other keywords of `AsyncAgent.submit` are arguments).
SUBMIT_OPTIONS = frozenset(
    {
        "timeout_ms",
        "queue_timeout_ms",
        "idempotency_key",
        "delivery",
        "dedup",
        "result_budget_bytes",
        "fallback_tool",
        "fallback_last_good_max_age_ms",
    }
)
M = TypeVar("M")
T = TypeVar("T")

#: Most seconds `AsyncAgent.close()` waits, in all, for what the agent runs
#: to end (the stream's reader, the turn loop, its own calls); what has not
#: ended by then is cancelled and left.
CLOSE_TIMEOUT = 5.0


@runtime_checkable
class Agent(Protocol):
    """What `AsyncAgent` wraps: anything with `send(message)`.

    `send` may be a plain method (run on a thread, so the completion stream
    keeps flowing meanwhile) or a coroutine function; it returns when the
    model's turn is over. An optional `is_idle()` lets the agent report that
    it is busy outside `send` (streaming to its user, say); call
    `AsyncAgent.drain()` when it becomes idle again. An optional
    `interrupt(message)` (plain or coroutine) takes an INTERRUPT result into
    the turn that is running; it returns False to leave it for the next turn.
    """

    def send(self, message: str) -> Any: ...


def default_batch_text(completions: Sequence[Completion]) -> str:
    """One message for results delivered together: the server's texts (each
    names its task ID and tool), verbatim, in delivery order."""
    return "\n\n".join(c.text() for c in completions)


def default_user_text(message: str, results_text: str) -> str:
    """A user's message with the results that arrived before it, after its text."""
    return f"{message}\n\n{results_text}"


class AsyncAgent(TurnLoop):
    """Wraps an agent and feeds it a session's completions, the user first.

    Args:
        agent: the object to deliver to (see `Agent`): it needs `send(message)`.
        source: an `AsyncClient` (its session's completion stream is followed)
            or an `AsyncToolManager` (the agent registers as its completion
            callback, as in the seed text, and starts itself at its first
            result, which it delivers at once when idle: no `start()` needed).
        session_id: the session (default: the client's or the manager's).
        after_seq: with a client, resume after this completion seq (at most
            the session's last seq: beyond it the stream raises OutOfRange).
        on_status: called with ("queued" | "draining" | "delivered", completions)
            and ("progress", [Progress]); may be a coroutine function.
        ack: with a client, tell the server to drop completions once delivered
            (AckCompletions; pass False when something else also reads the
            session). On a manager, the manager's `ack` decides: the agent
            tells it what it has delivered, and it acknowledges no result
            before (one queued here, or held by an agent not started yet,
            stays on the server).
        format_batch: turns a list of completions into one message.
        results_with_user: put results that arrived before a user's message
            in that message (True) or in the turn right after it (False).
        format_user: joins a user's message and the results' text.
        batch_window: seconds an idle agent waits after a first result for
            others to deliver with it (0: none).
        max_pending: most results held for delivery before the stream waits.
        keep_delivered: how many delivered results `delivered` and `prune`
            remember (and how many digest texts `prune` remembers).
        digest: prepend the session's PendingDigest text to each turn (when
            the server has one and it is not empty).
        include_progress: with a client, follow running tasks' progress
            (to `on_status("progress", ...)`).

    Raises:
        TypeError: `agent` has no `send`, or `source` is neither an
            `AsyncClient` nor an `AsyncToolManager` (a blocking `Client`
            goes with `SyncAgent`).
    """

    def __init__(
        self,
        agent: Agent,
        source: Union[AsyncClient, AsyncToolManager],
        *,
        session_id: Optional[str] = None,
        after_seq: int = 0,
        on_status: Optional[StatusCallback] = None,
        ack: bool = True,
        format_batch: Callable[[Sequence[Completion]], str] = default_batch_text,
        results_with_user: bool = True,
        format_user: Callable[[str, str], str] = default_user_text,
        batch_window: float = 0.05,
        max_pending: int = 10_000,
        keep_delivered: int = 1_000,
        digest: bool = True,
        include_progress: bool = True,
    ) -> None:
        if not callable(getattr(agent, "send", None)):
            raise TypeError(
                f"AsyncAgent(agent, source): agent must have a send(message) method "
                f"(plain or async def); got {type(agent).__name__}"
            )
        self.client: Optional[AsyncClient] = None
        self.manager: Optional[AsyncToolManager] = None
        if isinstance(source, AsyncToolManager):
            self.manager = source
        elif isinstance(source, AsyncClient):
            self.client = source
        elif isinstance(source, Client):
            raise TypeError(
                "AsyncAgent(agent, source) takes an AsyncClient (in asyncio code) or an "
                "AsyncToolManager, not the blocking Client: use AsyncClient(...), or "
                "SyncAgent(agent, client) in blocking code"
            )
        else:
            raise TypeError(
                "AsyncAgent(agent, source): source must be an AsyncClient or an "
                f"AsyncToolManager; got {type(source).__name__}"
            )
        if batch_window < 0 or max_pending < 1 or keep_delivered < 0:
            raise ValueError("batch_window >= 0, max_pending >= 1 and keep_delivered >= 0")
        self.agent = agent
        self.session_id = (
            source.session_id if session_id is None else checked_session_id(session_id)
        )
        self.on_status = on_status
        self.ack = ack and self.client is not None
        self.format_batch = format_batch
        self.results_with_user = results_with_user
        self.format_user = format_user
        self.batch_window = batch_window
        self.max_pending = max_pending
        self.digest = digest
        self.include_progress = include_progress
        self.last_error: Optional[BaseException] = None
        #: The highest seq below which every result was delivered and
        #: acknowledged (to the server when `ack`); `prune` stubs only these.
        self.acked_seq = after_seq
        self._after_seq = after_seq
        self._results: deque[Completion] = deque()
        self._silent: deque[Completion] = deque()
        self._urgent = False
        self._undelivered: set[int] = set()
        self._max_seen = after_seq
        self._showing: set[int] = set()
        self._digests: dict[str, None] = {}
        self._latest_digest = ""
        self._keep_digests = keep_delivered
        self._users: deque[_UserTurn] = deque()
        self._delivered: deque[Completion] = deque(maxlen=keep_delivered)
        self._delivered_texts: deque[str] = deque(maxlen=keep_delivered)
        self._queued_while_busy = False
        self._busy = False
        self._closed = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        #: What has the agent leave `_loop` as that loop ends (see `_leave`).
        self._loop_end: Optional[LoopEnd] = None
        #: The last loop the agent left as it ended (it is not started there again).
        self._left: Optional[asyncio.AbstractEventLoop] = None
        self._own_loop: Optional[LoopThread] = None
        # Results from the manager before a loop was bound (at most max_pending).
        self._early: list[Completion] = []
        self._early_lock = threading.Condition()
        self._arriving = {}
        self._wake: Optional[asyncio.Event] = None
        self._user_arrived: Optional[asyncio.Event] = None
        self._space: Optional[asyncio.Event] = None
        self._drained: list[asyncio.Future[None]] = []
        self._stream: Optional[AsyncSessionEventStream] = None
        self._listener: Optional[asyncio.Task[None]] = None
        self._runner: Optional[asyncio.Task[None]] = None
        self._handoffs: set[asyncio.Task[None]] = set()
        self._calls = 0
        self._no_calls: Optional[asyncio.Event] = None
        self._owner = self.on_result
        # A manager's agent starts itself at its first result, as the
        # seed's delivers at once: on the loop it was made in, else on a
        # private one (blocking use). See `_start_for_result`.
        self._made_in = running_loop()
        self._start_lock = threading.Lock()
        self._starting = False
        if self.manager is not None:
            # It owns what it is given: the manager acknowledges a result
            # only once the agent has delivered it (see `_record`).
            self.manager.add_done_callback(self._owner, owns=True)
            self.manager.add_progress_callback(self._progress_from_thread)

    # -- running on a loop, from asyncio or from blocking code ----------------------
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

    async def _start(self) -> AsyncAgent:
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

    async def __aenter__(self) -> AsyncAgent:
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    # -- state -----------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a turn (a `send` or a delivery) is running."""
        return self._busy

    @property
    def state(self) -> str:
        """The seed's state machine: "busy" (a turn runs), "queued" (results wait
        for the agent to be idle, or to start) or "idle"."""
        if self._busy:
            return "busy"
        with self._early_lock:
            early = bool(self._early)
        return "queued" if self._results or early else "idle"

    def is_idle(self) -> bool:
        """No turn runs and the wrapped agent (if it says) is idle."""
        return not self._busy and self._agent_idle()

    @property
    def pending(self) -> list[Completion]:
        """Results waiting for delivery, in completion order (SILENT ones too,
        and those a manager gave the agent before it started)."""
        with self._early_lock:
            early = list(self._early)
        return sorted([*early, *self._results, *self._silent], key=lambda c: c.seq)

    @property
    def silent(self) -> list[Completion]:
        """SILENT results waiting to lead the next user message."""
        return list(self._silent)

    @property
    def queue(self) -> list[Completion]:
        """The seed's name for `pending`."""
        return self.pending

    @property
    def delivered(self) -> list[Completion]:
        """The last `keep_delivered` results handed to the agent, in delivery order."""
        return list(self._delivered)

    @property
    def last_seq(self) -> int:
        """Seq of the last completion received (persist it to resume with after_seq)."""
        if self._stream is not None:
            return self._stream.last_seq
        return max((c.seq for c in self._delivered), default=self._after_seq)

    # -- the agent's side --------------------------------------------------------
    def submit(
        self, tool: str, arguments: Optional[Mapping[str, Any]] = None, /, **kwargs: Any
    ) -> DualAck:
        """Submit a tool call in this agent's session; returns the `Ack`
        (awaitable, or blocking outside asyncio: type checkers see an `Ack`
        either way)."""
        ack: DualAck = self._dual(lambda: self._submit(tool, dict(arguments or {}), kwargs))
        return ack

    async def _submit(self, tool: str, arguments: dict[str, Any], options: dict[str, Any]) -> Ack:
        if self.client is not None:
            ack: Ack = await self.client.submit(
                tool, arguments, session_id=self.session_id, **options
            )
            return ack
        assert self.manager is not None
        # As with a client: submit's own options by name, the rest are arguments.
        own = {k: options.pop(k) for k in list(options) if k in SUBMIT_OPTIONS}
        return await asyncio.to_thread(
            self.manager.submit_call, tool, {**arguments, **options}, **own
        )

    def send(self, message: str) -> Any:
        """Run a turn with the user's `message`, ahead of any pending results.

        Results that arrived before it go with it (see `results_with_user`).
        Returns what the agent's `send` returned, once this turn is over;
        results keep being delivered in the background. Awaitable in asyncio
        code; blocking outside an event loop.
        """
        if not isinstance(message, str):
            raise TypeError(f"send() takes the user's message as a str, not {type(message)!r}")
        return self._dual(lambda: self._send(message))

    async def _send(self, message: str) -> Any:
        await self._start()
        assert self._wake is not None and self._user_arrived is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._users.append(_UserTurn(message, future))
        self._user_arrived.set()
        self._wake.set()
        return await future

    def drain(self) -> Any:
        """Deliver queued results now, if the agent is idle; returns when done.

        Needed only for agents whose `is_idle()` turns True outside `send`.
        Awaitable, or blocking outside asyncio.
        """
        return self._dual(self._drain)

    def drain_queue(self) -> Any:
        """The seed's name for `drain`."""
        return self.drain()

    async def _drain(self) -> None:
        await self._start()
        if not self._results or not self._agent_idle():
            return
        assert self._wake is not None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drained.append(waiter)
        self._wake.set()
        await waiter

    def on_result(self, result: Union[AsyncTaskResult, Completion]) -> None:
        """Take one result, from any thread (the manager's callback calls this).

        Delivered at once when the agent is idle, else queued, as in the seed;
        held for the start by an agent not started yet. Blocks the calling
        thread while `max_pending` results wait.
        """
        completion = result.completion if isinstance(result, AsyncTaskResult) else result
        if self._closed:
            return
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
                else:
                    await self.on_completion(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = exc
            log.error("errand AsyncAgent: completion stream failed: %s", exc)


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
