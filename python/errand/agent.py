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
leaves that loop as it ends and starts again on the next loop that uses it,
keeping what it held: its stream goes on after its last item, and results
queued, cut short in a turn or given by a manager meanwhile are delivered
there, once. A use from a second loop while the first still runs raises
RuntimeError.

`AsyncAgent` is built in layers, each a private module: `errand._turns`
(the turn loop: who speaks next, and what is said), `errand._agent_loops`
(running from asyncio or blocking code, on one event loop after another:
start and close) and `errand._agent_intake` (results from a manager's
thread or the session's stream). This module holds the agent's state and
its user's side: `send`, `drain`, `submit`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Mapping, Sequence
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

from errand._agent_intake import ResultIntake
from errand._agent_loops import CLOSE_TIMEOUT as CLOSE_TIMEOUT
from errand._core import checked_session_id
from errand._loop import running_loop
from errand._turns import (
    DELIVERED,
    DRAINING,
    PROGRESS,
    QUEUED,
    _UserTurn,
)
from errand.aio import AsyncClient
from errand.client import Client
from errand.history import prune_history
from errand.manager import AsyncToolManager
from errand.types import Ack, Completion

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


class AsyncAgent(ResultIntake):
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
        self._undelivered: set[tuple[int, int]] = set()
        self._epoch = 0
        self._max_seen = after_seq
        self._keys: dict[int, tuple[int, int]] = {}
        self._epoch_of: dict[int, int] = {}
        self._stream_resets = 0
        self._stream_epochs = 0
        self._showing: set[tuple[int, int]] = set()
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
        self._loop_end = None
        self._left = None
        self._own_loop = None
        self._early = []
        self._early_lock = threading.Condition()
        self._arriving = {}
        self._wake: Optional[asyncio.Event] = None
        self._user_arrived: Optional[asyncio.Event] = None
        self._space: Optional[asyncio.Event] = None
        self._drained: list[asyncio.Future[None]] = []
        self._stream = None
        self._listener = None
        self._runner = None
        self._handoffs = set()
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
