"""The turn loop of `AsyncAgent` (not public): who speaks next, and what is said.

One task runs the agent's turns one at a time. At each turn boundary:

1. a pending user message goes first (with the results that arrived before
   it, after its text, when `results_with_user`; INTERRUPT results always;
   SILENT results lead it);
2. else pending results go, in one message, if the agent is idle: right
   away after a busy spell or when an INTERRUPT result waits, or after a
   `batch_window` that gathers the results arriving together (cut short by
   a user message or an INTERRUPT result);
3. else it waits to be woken (a result, a user message, `drain()`).

Every turn's message starts with the session's pending digest text when the
server has something to say, its count of unacknowledged results made the
number the model has not been shown, SILENT ones said to come with the next
user message (see `errand._digest`: `digest_text`; the `errand_pending`
session tool words its answer by the same rule, through `session_digest`);
`prune` drops the digests of older turns. After a turn, the completions it carried are
acknowledged up to the highest seq below which everything was delivered (a
SILENT result still waiting holds the acknowledgement back, so that a restart
replays it): never before, so that a result queued in the agent, or in one
closed before it could deliver, stays on the server. On a manager, the agent
tells it what it delivered (`AsyncToolManager.delivered`) and the manager
acknowledges. After a stream reset (the server lost the session's
completions: its seqs start again), the old results still held are
delivered but never acknowledged, nor taken for new ones of the same seq, and
nothing is acknowledged until the new server's first completion arrives.
The texts are the server's, verbatim (that one sentence aside).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

from errand._digest import Seen, digest_text
from errand._loop import running_loop
from errand.aio import AsyncClient
from errand.errors import DeadlineExceeded, Unavailable, Unimplemented
from errand.history import default_stub, drop_superseded_digests, prune_history, stub_results
from errand.types import Completion, DeliveryPolicy, PendingDigest, Progress

if TYPE_CHECKING:
    from errand.manager import AsyncToolManager

log = logging.getLogger("errand.agent")

M = TypeVar("M")
T = TypeVar("T")

#: The status names passed to `on_status`.
QUEUED = "queued"
DRAINING = "draining"
DELIVERED = "delivered"
PROGRESS = "progress"


class _UserTurn:
    def __init__(self, message: str, future: asyncio.Future[Any]) -> None:
        self.message = message
        self.future = future


class TurnLoop:
    """The state and turn logic `AsyncAgent` is built on (see the module doc)."""

    agent: Any
    client: Optional[AsyncClient]
    manager: Optional[AsyncToolManager]
    session_id: str
    on_status: Optional[Callable[[str, Sequence[Any]], Any]]
    ack: bool
    digest: bool
    acked_seq: int
    _silent: deque[Completion]
    _urgent: bool
    #: The (epoch, seq) of each result received and not yet delivered. An
    #: epoch counts the stream's resets (the server lost the session's
    #: completions; its seqs start again at 1): a result of an earlier epoch
    #: is still delivered, but never acknowledged, nor taken for the new
    #: server's result of the same seq.
    _undelivered: set[tuple[int, int]]
    #: The epoch of the newest result received, the highest seq received in
    #: it, and each held result's (epoch, seq), by id (see `_key`).
    _epoch: int
    _max_seen: int
    _keys: dict[int, tuple[int, int]]
    #: The epoch of a result handed in but not received yet, by id: set by
    #: the stream's reader or the manager's callback (none: the current).
    _epoch_of: dict[int, int]
    #: The stream's count of resets that its reader last took (see
    #: `_reset_pending`), and the epoch its reader gives what follows.
    _stream_resets: int
    _stream_epochs: int
    #: The (epoch, seq) of the message the model is handling now (see `_seen`).
    _showing: set[tuple[int, int]]
    #: The digest texts prepended to turns (at most `keep_delivered`, each
    #: once), and the latest turn's ("" when it had none): for `prune`.
    _digests: dict[str, None]
    _latest_digest: str
    _keep_digests: int
    format_batch: Callable[[Sequence[Completion]], str]
    results_with_user: bool
    format_user: Callable[[str, str], str]
    batch_window: float
    max_pending: int
    _loop: Optional[asyncio.AbstractEventLoop]
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
    #: How many of the agent's own gRPC calls are in flight, and set when
    #: none is (see `_own_call`).
    _calls: int
    _no_calls: Optional[asyncio.Event]
    #: The callback the agent registers with a manager, as the owner of what it is given.
    _owner: Callable[[Any], None]
    #: Completions handed to the agent (by its stream's reader, a manager's
    #: callback) and not taken in yet (`_received`), by id: those whose
    #: hand-over the end of the agent's event loop cut short are held for
    #: the next loop (see `AsyncAgent._leave`).
    _arriving: dict[int, Completion]

    async def _start(self) -> Any:
        raise NotImplementedError  # AsyncAgent's

    # -- what arrives: completions and progress ------------------------------------
    async def on_completion(self, completion: Completion) -> None:
        """Take one completion in the agent's loop: deliver now if idle, else queue.

        The stream listener calls this; call it yourself to feed completions
        from elsewhere. Waits while `max_pending` results are held.
        """
        self._arriving.setdefault(id(completion), completion)
        if self._space is None:
            await self._start()
        assert self._space is not None and self._wake is not None
        assert self._user_arrived is not None
        while len(self._results) + len(self._silent) >= self.max_pending:
            self._space.clear()
            await self._space.wait()
        self._arriving.pop(id(completion), None)
        self._received(completion)
        busy = self._busy or not self._agent_idle()
        if completion.delivery == DeliveryPolicy.SILENT:
            self._silent.append(completion)  # starts no turn
            await self._status(QUEUED, [completion])
            return
        if completion.delivery == DeliveryPolicy.INTERRUPT:
            try:
                if busy and await self._interrupt(completion):
                    return
            except asyncio.CancelledError:
                if self._key(completion) in self._undelivered or completion.seq <= 0:
                    self._results.append(completion)  # not taken: for the next turn
                raise
            self._urgent = True
            self._user_arrived.set()  # cut a batch window short
        self._results.append(completion)
        self._wake.set()
        if busy:
            self._queued_while_busy = True
            await self._status(QUEUED, [completion])

    def _progress_from_thread(self, progress: Progress) -> None:
        """The manager's progress callback: hand the report to the agent's loop
        (dropped before the agent starts: progress is not durable anyway)."""
        loop = self._loop
        if loop is None or loop.is_closed() or self._closed:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.on_progress(progress), loop)
        except RuntimeError:
            pass  # the loop closed meanwhile

    async def on_progress(self, progress: Progress) -> None:
        """A running task's progress: to `on_status("progress", [progress])`, never a turn."""
        await self._status(PROGRESS, [progress])

    def prune(
        self,
        history: Sequence[M],
        *,
        keep_results: Optional[int] = None,
        keep_last: int = 0,
        stub: Callable[[Completion], str] = default_stub,
    ) -> list[M]:
        """A copy of `history` with this agent's older results and digests taken out.

        With `keep_results=N`: every acknowledged result (seq at most
        `acked_seq`) but the last N delivered is replaced in place by
        `stub(completion)`; results not yet acknowledged are never touched.
        Without it: `prune_history` drops the delivered results' text (all
        but the last `keep_last` messages that carry them).

        Either way, the pending digests this agent prepended to its turns go
        too, but the latest turn's (none when that turn had none): each told
        what was pending at its turn, and only the latest still holds (see
        `drop_superseded_digests`; the last `keep_delivered` are remembered).

        `history` holds strings or OpenAI/Anthropic/Bedrock message dicts.
        """
        if keep_results is not None and keep_results < 0:
            raise ValueError("keep_results must be >= 0")
        history = drop_superseded_digests(history, list(self._digests), self._latest_digest)
        if keep_results is None:
            return prune_history(history, list(self._delivered_texts), keep_last=keep_last)
        acked = [c for c in self._delivered if c.seq <= self.acked_seq]
        older = acked[: len(acked) - keep_results] if keep_results else acked
        return stub_results(history, older, stub)

    # -- the turn loop -------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while not self._closed:
                if self._users:
                    await self._user_turn(self._users.popleft())
                elif self._results and self._agent_idle():
                    if not (self._queued_while_busy or self._urgent) and self.batch_window > 0:
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

    def _take_results(self, only_urgent: bool = False) -> list[Completion]:
        """The results for the next turn: INTERRUPT ones first, then the rest
        in arrival order (with `only_urgent`, the INTERRUPT ones alone)."""
        assert self._space is not None
        urgent = [c for c in self._results if c.delivery == DeliveryPolicy.INTERRUPT]
        rest = [c for c in self._results if c.delivery != DeliveryPolicy.INTERRUPT]
        self._results.clear()
        if only_urgent:
            self._results.extend(rest)
            rest = []
        else:
            self._queued_while_busy = False
        self._urgent = False
        self._space.set()
        return urgent + rest

    def _take_silent(self) -> list[Completion]:
        assert self._space is not None
        silent = list(self._silent)
        self._silent.clear()
        self._space.set()
        return silent

    async def _user_turn(self, turn: _UserTurn) -> None:
        found = await self._digest()  # first: results arriving meanwhile still join
        silent = self._take_silent()
        batch = self._take_results(only_urgent=not self.results_with_user)
        self._showing = {self._key(c) for c in silent + batch}
        try:
            try:
                digest = self._model_digest(found)
                text = self.format_batch(batch) if batch else ""
                message = self.format_user(turn.message, text) if batch else turn.message
                lead = self.format_batch(silent) if silent else ""
                parts = [digest, lead, message]
                if batch or silent:
                    await self._status(DRAINING, silent + batch)
                self._busy = True
                try:
                    reply = await self._call_agent(_join(parts))
                finally:
                    self._busy = False
            except BaseException as exc:
                # Not delivered (cancelled, as when the loop ends, or failed):
                # kept for the next turn, on this loop or the next one.
                self._results.extendleft(reversed(batch))
                self._silent.extendleft(reversed(silent))
                if not turn.future.done():
                    turn.future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            if not turn.future.done():
                turn.future.set_result(reply)
            if silent:
                await self._record(silent, lead)
            if batch:
                await self._record(batch, text)
        finally:
            self._showing = set()

    async def _results_turn(self) -> bool:
        """Deliver everything pending as one message; False when the agent failed."""
        found = await self._digest()
        draining = self._queued_while_busy
        batch = self._take_results()
        self._showing = {self._key(c) for c in batch}
        try:
            try:
                digest = self._model_digest(found)
                if draining:
                    await self._status(DRAINING, batch)
                text = self.format_batch(batch)
                message = _join([digest, text])
                self._busy = True
                try:
                    await self._call_agent(message)
                finally:
                    self._busy = False
            except BaseException as exc:
                # Kept for the next turn (on the next loop, when this one
                # is ending: the turn was cancelled, not delivered).
                self._results.extendleft(reversed(batch))
                self._urgent = any(c.delivery == DeliveryPolicy.INTERRUPT for c in self._results)
                if not isinstance(exc, Exception):
                    raise
                self.last_error = exc
                log.error("errand AsyncAgent: delivery failed: %s", exc)
                return False
            await self._record(batch, text)
            return True
        finally:
            self._showing = set()

    async def _interrupt(self, completion: Completion) -> bool:
        """Hand an INTERRUPT result to the busy agent's `interrupt(message)`
        hook; False when it has none, declines (returns False) or fails."""
        hook = getattr(self.agent, "interrupt", None)
        if not callable(hook):
            return False
        text = self.format_batch([completion])
        try:
            if inspect.iscoroutinefunction(hook):
                answer = await hook(text)
            else:
                answer = await asyncio.to_thread(hook, text)
                if inspect.isawaitable(answer):
                    answer = await answer
        except Exception as exc:
            log.warning(
                "errand AsyncAgent: interrupt() raised, delivering at the next turn: %s", exc
            )
            return False
        if answer is False:
            return False
        await self._record([completion], text)
        return True

    async def _digest(self) -> Union[PendingDigest, str, None]:
        """The session's PendingDigest, asked with `DIGEST_TIMEOUT`; None when
        `digest` is off, from a server without PendingDigest, or when the call
        failed; `UNREACHABLE` (the text the model reads instead) when the
        server is down or did not answer in time."""
        if not self.digest:
            return None
        try:
            if self.client is not None:
                found: PendingDigest = await self._own_call(
                    self.client.pending_digest(self.session_id, timeout=DIGEST_TIMEOUT)
                )
            elif self.manager is not None:
                found = await asyncio.to_thread(
                    self.manager.client.pending_digest, self.session_id, timeout=DIGEST_TIMEOUT
                )
            else:
                return None
        except Unimplemented:
            self.digest = False  # an older server: never ask again
            log.info("errand AsyncAgent: the server has no PendingDigest; turns go without it")
            return None
        except (Unavailable, DeadlineExceeded) as exc:
            log.warning("errand AsyncAgent: the turn goes on without the pending digest: %s", exc)
            return UNREACHABLE
        except Exception as exc:  # the turn goes on without it
            log.warning("errand AsyncAgent: PendingDigest failed: %s", exc)
            return None
        return found

    def _model_digest(self, found: Union[PendingDigest, str, None]) -> str:
        """The digest text that leads the turn about to start ("" for none),
        by `digest_text`, and remembered for `prune`."""
        if isinstance(found, str):
            text = found
        else:
            text = "" if found is None else digest_text(found, self._seen())
        self._latest_digest = text
        if text:
            self._digests.pop(text, None)  # each text once, the latest last
            self._digests[text] = None
            while len(self._digests) > self._keep_digests:
                del self._digests[next(iter(self._digests))]
        return text

    def _seen(self) -> Seen:
        """What the model has been shown, as `digest_text` counts it: every seq
        up to the highest this agent received (the seqs are consecutive;
        those up to `after_seq` were a previous reader's), but those it still
        holds and the message in the model's hands (`_showing`) does not
        carry. Call it in the agent's loop (`_seen_from_anywhere` elsewhere)."""
        keys = {k for k in self._undelivered if k[0] == self._epoch and k not in self._showing}
        held = frozenset(seq for _, seq in keys)
        silent = frozenset(c.seq for c in self._silent if self._key(c) in keys)
        return Seen(self._max_seen, held, silent)

    async def _seen_from_anywhere(self) -> Optional[Seen]:
        """`_seen()` from any event loop or thread (None when the agent's loop
        has ended, or does not answer within `SEEN_TIMEOUT`)."""
        loop = self._loop
        if loop is None or self._closed or loop.is_closed():
            return None
        if running_loop() is loop:
            return self._seen()
        if not loop.is_running():
            return None

        async def seen() -> Seen:
            return self._seen()

        try:
            handed = asyncio.run_coroutine_threadsafe(seen(), loop)
            return await asyncio.wait_for(asyncio.wrap_future(handed), SEEN_TIMEOUT)
        except (RuntimeError, asyncio.TimeoutError):
            return None  # the loop closed or stopped meanwhile

    def _received(self, completion: Completion) -> None:
        epoch = self._epoch_of.pop(id(completion), self._epoch)
        if epoch > self._epoch:
            # The first result after a reset: the new server's seqs start
            # again; what is still held of the old ones keeps its epoch.
            self._epoch = epoch
            self.acked_seq = self._max_seen = 0
        if completion.seq > 0:
            key = (epoch, completion.seq)
            self._keys[id(completion)] = key
            self._undelivered.add(key)
            if epoch == self._epoch:
                self._max_seen = max(self._max_seen, completion.seq)

    def _key(self, completion: Completion) -> tuple[int, int]:
        """(epoch, seq) of a result received (see `_undelivered`)."""
        return self._keys.get(id(completion), (self._epoch, completion.seq))

    def _reset_pending(self) -> bool:
        """Whether the agent's stream has reset and shown no new completion
        yet: no seq of the new server is known, so none may be acknowledged.
        Also while the listener has counted the reset (`_stream_epochs`) but
        its first new completion waits for room (`max_pending`) before
        `_received` moves `_epoch`: what is held is still the old server's."""
        if self._stream_epochs > self._epoch:
            return True
        stream = getattr(self, "_stream", None)
        return stream is not None and stream.resets != self._stream_resets

    async def _record(self, batch: list[Completion], text: str) -> None:
        self._delivered.extend(batch)
        self._delivered_texts.append(text)
        keys = [self._key(c) for c in batch]
        for c, key in zip(batch, keys):
            self._undelivered.discard(key)
            self._keys.pop(id(c), None)
        await self._status(DELIVERED, batch)
        # Everything of this epoch at or below `upto` has been delivered.
        held = [seq for epoch, seq in self._undelivered if epoch == self._epoch]
        upto = min(held) - 1 if held else self._max_seen
        if self.manager is not None:
            # The manager acknowledges, once no consumer holds a seq (this
            # agent holds each result it was given until here); per epoch,
            # which the manager checks is still its own.
            by_epoch: dict[int, list[int]] = {}
            for epoch, seq in keys:
                if seq > 0:
                    by_epoch.setdefault(epoch, []).append(seq)
            try:
                for epoch, seqs in by_epoch.items():
                    release = asyncio.to_thread(self.manager._release, self._owner, seqs, epoch)
                    await self._own_call(release)
            except Exception as exc:  # delivered; the server keeps them until retention
                log.warning("errand AsyncAgent: releasing results to the manager failed: %s", exc)
                return
        elif self._reset_pending():
            return  # what was delivered is the old server's: nothing to acknowledge
        elif upto > self.acked_seq and self.ack and self.client is not None:
            try:
                call = self.client.ack_completions(upto, session_id=self.session_id)
                await self._own_call(call)
            except Exception as exc:  # the results are delivered; acking is an optimisation
                log.warning("errand AsyncAgent: AckCompletions failed: %s", exc)
                return
        # Without `ack` there is nothing to tell the server.
        self.acked_seq = max(self.acked_seq, upto)

    async def _own_call(self, call: Coroutine[Any, Any, T]) -> T:
        """Runs one of the agent's own calls (PendingDigest, AckCompletions),
        counted, so that `close()` lets it finish before it cancels anything:
        a gRPC call cancelled mid-flight completes later inside gRPC, and when
        that is after its event loop closed, gRPC's poller prints
        "RuntimeError: Event loop is closed". Once closing, no call starts
        (CancelledError: the caller is about to be cancelled anyway)."""
        if self._closed or self._no_calls is None:
            call.close()
            raise asyncio.CancelledError
        self._calls += 1
        self._no_calls.clear()
        try:
            return await call
        finally:
            self._calls -= 1
            if not self._calls:
                self._no_calls.set()

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

    async def _status(self, status: str, completions: Sequence[Any]) -> None:
        if self.on_status is None:
            return
        try:
            result = self.on_status(status, list(completions))
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.warning("errand AsyncAgent: on_status(%s) raised: %s", status, exc)


def _join(parts: Sequence[str]) -> str:
    return "\n\n".join(p for p in parts if p)


#: Most seconds `errand_pending` waits for the agent's loop to say what the
#: model has been shown, before it answers with the server's count.
SEEN_TIMEOUT = 5.0

#: Most seconds a turn waits for the session's PendingDigest: the server
#: down or restarting must not hold the user's turn for the client's whole
#: `timeout` (30 s by default); the turn goes on without the digest.
DIGEST_TIMEOUT = 2.0

#: What leads a turn instead of the digest when the server could not be
#: asked: the model can tell the user, and expect its tool calls to fail.
UNREACHABLE = (
    "[errand] Note: could not reach the errand server just now, so the state of earlier "
    "tool calls is unknown; new tool calls may fail until it is back."
)
