"""The asyncio client: the same calls as `errand.Client`, awaitable.

from errand import AsyncClient

async with AsyncClient("127.0.0.1:7466") as client:
    ack = await client.submit("research_topic", topic="tides")
    async for completion in client.completions():
        print(completion.task_id, completion.result)
        break
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any, Callable, Literal, Optional, TypeVar, Union, overload

import grpc
import grpc.aio

from errand._common import Backoff, Connection, PathLike, SubmitOptions, connection
from errand._connect import CONNECT_TIMEOUT, wait_ready_async
from errand._core import (
    Call,
    ClientCore,
    ResultPager,
    Settings,
    Step,
    StreamCursor,
    by_reference,
    outcome,
    unknown_tool,
)
from errand._loop import LoopEnd, running_loop
from errand._stream import StreamBase
from errand.callables import async_remote_tool
from errand.errors import ClosedError, DeadlineExceeded
from errand.types import (
    Ack,
    Completion,
    DedupPolicy,
    DeliveryPolicy,
    PendingDigest,
    ResultChunk,
    SessionEvent,
    Task,
    ToolInfo,
)
from errand.v1 import errand_pb2_grpc as pb_grpc

_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # not in grpc-stubs

__all__ = ["AsyncClient", "AsyncCompletionStream", "AsyncSessionEventStream"]

#: Most seconds `aclose()` waits for gRPC to end a stream's call.
_DRAIN_TIMEOUT = 1.0

T = TypeVar("T")
E = TypeVar("E")
S = TypeVar("S", bound="_AsyncStream[Any]")
Metadata = Sequence[tuple[str, str]]


class AsyncClient(Settings):
    """An asyncio connection to an errand server, for agents.

    Takes the same arguments as `errand.Client` (the token and TLS ones too).
    It may be made anywhere, in an event loop or not (blocking code that
    hands it to an `AsyncAgent`, say): its gRPC channel, which belongs to
    one event loop, is made on the loop of its first call, closed as that
    loop ends (its streams' calls there first: see `errand._loop.LoopEnd`;
    `asyncio.run` and `asyncio.Runner` let it), and made anew on the next
    loop that uses the client (one `asyncio.run` after another, or a
    blocking `AsyncAgent` whose private loop ended, as after a `start()`
    that failed). Its streams go on in the next loop, after the last item
    they gave. A server that answered
    on an earlier loop still counts as reached (see `connect_timeout`).
    Calls from a second loop while the first still lives raise
    RuntimeError: use one client per live loop. A `channel=` given is used
    as it is, on its own loop.
    """

    def __init__(
        self,
        target: Optional[str] = None,
        *,
        session_id: Optional[str] = None,
        timeout: Optional[float] = 30.0,
        wait_for_ready: bool = True,
        metadata: Optional[Metadata] = None,
        channel: Optional[grpc.aio.Channel] = None,
        token: Optional[str] = None,
        tls_ca: Optional[PathLike] = None,
        tls_cert: Optional[PathLike] = None,
        tls_key: Optional[PathLike] = None,
        tls_domain: Optional[str] = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        _connection: Optional[Connection] = None,
    ) -> None:
        self._core = ClientCore(
            _connection
            or connection(
                target,
                token=token,
                tls_ca=tls_ca,
                tls_cert=tls_cert,
                tls_key=tls_key,
                tls_domain=tls_domain,
                metadata=metadata,
            ),
            session_id=session_id,
            timeout=timeout,
            wait_for_ready=wait_for_ready,
            connect_timeout=connect_timeout,
        )
        self.target = self._core.target
        #: A `channel=` given, used as it is (never closed here).
        self._given = channel
        self._given_stub: Optional[pb_grpc.ToolServiceStub] = (
            None if channel is None else pb_grpc.ToolServiceStub(channel)
        )
        #: The client's own channel on the loop it was made on: made on first
        #: use there (see `_channel_now`), closed as that loop ends.
        self._on: Optional[_OnLoop] = None
        #: The client's streams, whose calls end with their loop too.
        self._streams: weakref.WeakSet[_AsyncStream[Any]] = weakref.WeakSet()
        self._closed = False

    def _channel_now(self) -> grpc.aio.Channel:
        return self._on_now().channel

    def _on_now(self) -> _OnLoop:
        """The channel for a call on the running loop: made here on first use,
        or anew once the loop it was made on has ended (a gRPC aio channel
        belongs to the loop it was made on). The loop's end closes it, and
        first ends the calls of the client's streams on it (see `_end_on`).

        Raises RuntimeError when it belongs to another loop that is still
        open: a call there would fail with gRPC's "attached to a different
        loop", or wait for ever.
        """
        if self._closed:
            raise ClosedError("the client is closed")
        if self._given is not None:
            assert self._given_stub is not None
            return _OnLoop(None, self._given, self._given_stub)
        loop = asyncio.get_running_loop()
        on = self._on
        if on is not None and on.loop is not loop:
            assert on.loop is not None
            if not on.loop.is_closed():
                raise RuntimeError(
                    "this AsyncClient's channel belongs to another event loop, which is "
                    "still open: use the client on that loop, or one AsyncClient per loop"
                )
            # That loop closed without shutting down its async generators
            # (as asyncio.run does), so `_end_on` never ran there: its
            # channel is left to gRPC.
            self._on = on = None
        if on is None:
            channel = self._core.conn.aio_channel()
            on = self._on = _OnLoop(loop, channel, pb_grpc.ToolServiceStub(channel))
            made = on
            on.end = LoopEnd(lambda: self._end_on(made))
        return on

    def _stub_now(self) -> pb_grpc.ToolServiceStub:
        """The stub of `_channel_now()`: what every call and stream is opened on."""
        return self._on_now().stub

    async def _end_on(self, on: _OnLoop) -> None:
        """On `on.loop`, before it ends (or at `close()`): end the calls of the
        client's streams there (a stream stays open: its next read, on
        another loop, opens a call there, after the last item it gave),
        then close the channel. Nothing of it is left for gRPC to hand to
        the loop once closed."""
        if self._on is on:
            self._on = None
        for stream in list(self._streams):
            await stream._let_go(on.loop)
        await _close_quietly(on.channel)

    async def _leave_loop(self) -> None:
        """End the client's own channel if it belongs to the running loop,
        which is about to end: `_end_on` now rather than as the loop ends.
        The client stays open."""
        on = self._on
        if on is None or on.loop is not asyncio.get_running_loop():
            return
        on.forget()
        await self._end_on(on)

    async def close(self) -> None:
        """Close the channel; open completion streams end.

        A channel on another loop is closed on that loop when it still runs
        (waiting at most `_DRAIN_TIMEOUT` seconds); one whose loop has ended
        went with it."""
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):
            stream._closed.set()  # a stream on another loop ends at its next read
        on, self._on = self._on, None
        if on is None or on.loop is None:
            return
        loop = on.loop
        if loop.is_closed():
            on.forget()
        elif loop is asyncio.get_running_loop():
            on.forget()
            await self._end_on(on)
        elif loop.is_running():

            async def there() -> None:
                on.forget()
                await self._end_on(on)

            closing = asyncio.run_coroutine_threadsafe(there(), loop)
            try:
                await asyncio.wait_for(asyncio.wrap_future(closing), _DRAIN_TIMEOUT)
            except (asyncio.TimeoutError, RuntimeError):
                pass  # that loop is ending: its end closes the channel
        # else a loop stopped, not closed: its end (shutdown_asyncgens) closes it

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    async def _run(self, call: Call[T]) -> T:
        if self._closed:
            raise ClosedError("the client is closed")
        try:
            answer = await getattr(self._stub_now(), call.method)(
                call.request, **self._core.call_options(call.timeout)
            )
        except grpc.RpcError as exc:
            raise self._core.failed(exc, call.method, call.timeout) from None
        self._core.answered()
        return call.decode(answer)

    async def _reach(self, method: str) -> None:
        """`errand.Client._reach`: before a stream's first call, fail fast
        (Unavailable) when no server was ever reached at the target."""
        if self._core.connected:
            return
        if self._closed:
            raise ClosedError("the client is closed")
        state = await wait_ready_async(self._channel_now(), self._core.connect_timeout)
        error = self._core.reached(state, method)
        if error is not None:
            raise error

    async def list_tools(self) -> list[ToolInfo]:
        """Every tool workers have registered, sorted by name (see `errand.Client.list_tools`)."""
        pager = self._core.list_tools()
        while not pager.done:
            pager.accept(await self._run(pager.call()))
        return pager.tools

    @overload
    async def submit(
        self,
        tool: str,
        arguments: Optional[Mapping[str, Any]] = None,
        /,
        *,
        session_id: Optional[str] = None,
        timeout_ms: int = 0,
        queue_timeout_ms: int = 0,
        idempotency_key: str = "",
        delivery: Union[DeliveryPolicy, str, None] = None,
        dedup: Union[DedupPolicy, str, None] = None,
        result_budget_bytes: int = 0,
        fallback_tool: str = "",
        fallback_last_good_max_age_ms: int = 0,
        wait: Literal[False] = False,
        **kwargs: Any,
    ) -> Ack: ...

    @overload
    async def submit(
        self,
        tool: str,
        arguments: Optional[Mapping[str, Any]] = None,
        /,
        *,
        session_id: Optional[str] = None,
        timeout_ms: int = 0,
        queue_timeout_ms: int = 0,
        idempotency_key: str = "",
        delivery: Union[DeliveryPolicy, str, None] = None,
        dedup: Union[DedupPolicy, str, None] = None,
        result_budget_bytes: int = 0,
        fallback_tool: str = "",
        fallback_last_good_max_age_ms: int = 0,
        wait: Literal[True],
        **kwargs: Any,
    ) -> Any: ...

    async def submit(
        self,
        tool: str,
        arguments: Optional[Mapping[str, Any]] = None,
        /,
        *,
        session_id: Optional[str] = None,
        timeout_ms: int = 0,
        queue_timeout_ms: int = 0,
        idempotency_key: str = "",
        delivery: Union[DeliveryPolicy, str, None] = None,
        dedup: Union[DedupPolicy, str, None] = None,
        result_budget_bytes: int = 0,
        fallback_tool: str = "",
        fallback_last_good_max_age_ms: int = 0,
        wait: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Queue one call of `tool`; see `errand.Client.submit` (`wait=True` included)."""
        ack = await self._run(
            self._core.submit(
                tool,
                arguments,
                kwargs,
                session_id=session_id,
                timeout_ms=timeout_ms,
                queue_timeout_ms=queue_timeout_ms,
                idempotency_key=idempotency_key,
                options=SubmitOptions(
                    delivery,
                    dedup,
                    result_budget_bytes,
                    fallback_tool,
                    fallback_last_good_max_age_ms,
                ),
            )
        )
        return await self.result(ack.task_id) if wait else ack

    async def result(self, task_id: str, *, timeout: Optional[float] = None) -> Any:
        """Wait for a task to finish and return its result; see `errand.Client.result`."""
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, not {timeout!r}")
        task = await self.get_task(task_id)
        if task.status.finished:
            return outcome(task)

        async def follow() -> Any:
            async with self.completions(task.session_id) as stream:
                async for done in stream:
                    if done.task_id == task_id:
                        if by_reference(done):
                            return json.loads(await self.read_full_result(task_id))
                        return outcome(done)
            raise ClosedError(f"the client closed while waiting for task {task_id}")

        try:
            return await asyncio.wait_for(follow(), timeout)
        except asyncio.TimeoutError:
            task = await self.get_task(task_id)  # finished as the wait ran out?
            if task.status.finished:
                return outcome(task)
            raise DeadlineExceeded(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"task {task_id} did not finish within {timeout}s",
                "result",
            ) from None

    async def tool(self, name: str) -> Callable[..., Awaitable[str]]:
        """A registered tool as an `async def` function; see `errand.Client.tool`."""
        tools = await self.list_tools()
        for info in tools:
            if info.name == name:
                return async_remote_tool(self, info)
        raise unknown_tool(name, [t.name for t in tools])

    async def tools(self) -> list[Callable[..., Awaitable[str]]]:
        """Every registered tool as an `async def` function, sorted by name."""
        return [async_remote_tool(self, info) for info in await self.list_tools()]

    async def get_task(self, task_id: str) -> Task:
        """One task's state. Raises NotFound when unknown or no longer retained."""
        return await self._run(self._core.get_task(task_id))

    async def cancel(self, task_id: str, *, reason: str = "") -> Task:
        """Cancel a queued or running task (with a `reason`); see `errand.Client.cancel`."""
        return await self._run(self._core.cancel(task_id, reason))

    async def pending_digest(
        self,
        session_id: Optional[str] = None,
        *,
        max_bytes: int = 0,
        timeout: Optional[float] = None,
    ) -> PendingDigest:
        """What the session waits for; see `errand.Client.pending_digest`."""
        return await self._run(self._core.pending_digest(session_id, max_bytes, timeout))

    async def read_result(
        self, task_id: str, *, offset: int = 0, max_bytes: int = 0
    ) -> ResultChunk:
        """One page of a task's full result; see `errand.Client.read_result`."""
        return await self._run(self._core.read_result(task_id, offset, max_bytes))

    async def completion_result(self, completion: Completion) -> Any:
        """The parsed result of a completion; see `errand.Client.completion_result`."""
        if by_reference(completion):
            return json.loads(await self.read_full_result(completion.task_id))
        return outcome(completion)

    async def read_full_result(
        self, task_id: str, *, chunk_bytes: int = 0, max_total_bytes: int = 64 << 20
    ) -> str:
        """A task's whole result_json; see `errand.Client.read_full_result`."""
        pager = ResultPager(self._core, task_id, chunk_bytes, max_total_bytes)
        while not pager.done:
            pager.accept(await self._run(pager.call()))
        return pager.text()

    async def ack_completions(self, up_to_seq: int, *, session_id: Optional[str] = None) -> int:
        """Let the server drop the session's completions up to `up_to_seq`; returns how many."""
        return await self._run(self._core.ack_completions(up_to_seq, session_id))

    def completions(
        self,
        session_id: Optional[str] = None,
        *,
        after_seq: int = 0,
        reconnect: bool = True,
        backoff: Optional[Backoff] = None,
    ) -> AsyncCompletionStream:
        """Async-iterate a session's completions; see `errand.Client.completions`
        (the first connect fails fast with Unavailable, as there)."""
        if self._closed:
            raise ClosedError("the client is closed")
        cursor = self._core.cursor(session_id, after_seq, reconnect, backoff)
        stream = AsyncCompletionStream(
            self._stub_now,
            cursor,
            metadata=self._core.metadata,
            reach=self._reach,
            target=self._core.target,
        )
        self._streams.add(stream)
        return stream

    def session_events(
        self,
        session_id: Optional[str] = None,
        *,
        after_seq: int = 0,
        include_progress: bool = True,
        results_by_reference: bool = False,
        reconnect: bool = True,
        backoff: Optional[Backoff] = None,
        fallback: bool = False,
    ) -> AsyncSessionEventStream:
        """Async-iterate a session's completions and progress; see
        `errand.Client.session_events`."""
        if self._closed:
            raise ClosedError("the client is closed")
        cursor = self._core.event_cursor(
            session_id,
            after_seq,
            reconnect,
            backoff,
            include_progress=include_progress,
            results_by_reference=results_by_reference,
            fallback=fallback,
        )
        events = AsyncSessionEventStream(
            self._stub_now,
            cursor,
            metadata=self._core.metadata,
            reach=self._reach,
            target=self._core.target,
        )
        self._streams.add(events)
        return events


async def _close_quietly(channel: grpc.aio.Channel) -> None:
    """Close `channel` and return once gRPC has handed the loop what it owed
    it: the last events of calls cancelled on it (whose waiting tasks were
    cancelled too, as asyncio.run does before a loop's end) complete
    moments after the cancel, and one handed to a loop already closed is
    gRPC's "RuntimeError: Event loop is closed". A watch of the channel's
    state, begun before the close, ends with it (SHUTDOWN), through the
    same completion queue, after those events (at most `_DRAIN_TIMEOUT`)."""
    state = channel.get_state()
    watch = asyncio.ensure_future(channel.wait_for_state_change(state))
    await asyncio.sleep(0)  # the watch is in gRPC
    await channel.close(None)
    await asyncio.wait({watch}, timeout=_DRAIN_TIMEOUT)
    if not watch.done():
        watch.cancel()
    elif not watch.cancelled():
        watch.exception()  # retrieved: nothing is reported unseen


class _OnLoop:
    """A client's channel on one event loop (None: a `channel=` given), its
    stub, and what closes it as that loop ends."""

    def __init__(
        self,
        loop: Optional[asyncio.AbstractEventLoop],
        channel: grpc.aio.Channel,
        stub: pb_grpc.ToolServiceStub,
    ) -> None:
        self.loop = loop
        self.channel = channel
        self.stub = stub
        self.end: Optional[LoopEnd] = None

    def forget(self) -> None:
        """The loop's end is not to close the channel (it is closed now, or
        its loop is gone)."""
        if self.end is not None:
            self.end.forget()


class _AsyncStream(StreamBase[E], AsyncIterator[E]):
    """A reconnecting async iterator over one session's stream (see its cursor).

    `last_seq` is the seq of the last completion yielded.
    """

    #: A flag, not an asyncio.Event: the stream may be read on one loop
    #: after another (see `_let_go`), and an asyncio.Event belongs to one.
    _closed: threading.Event

    def __init__(
        self,
        stub: Callable[[], pb_grpc.ToolServiceStub],
        cursor: StreamCursor,
        *,
        metadata: Metadata,
        reach: Optional[Callable[[str], Awaitable[None]]] = None,
        target: str = "",
    ) -> None:
        super().__init__(stub, cursor, metadata=metadata, reach=reach, target=target)
        self._closed = threading.Event()
        #: The loop `_call` was opened on (its client's channel's).
        self._call_loop: Optional[asyncio.AbstractEventLoop] = None
        #: What a wait between reconnects waits on, to end early at `aclose()`.
        self._waiter: Optional[asyncio.Future[None]] = None
        self._reading = False  # a read of the call is in flight
        self._other_status_tasks: set[asyncio.Task[Any]] = set()

    def __aiter__(self: S) -> S:
        return self

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream; a pending `__anext__` ends with StopAsyncIteration.

        Returns once gRPC has ended the call (a local cancel: milliseconds;
        at most `_DRAIN_TIMEOUT` seconds)."""
        self._closed.set()
        waiter = self._waiter
        if waiter is not None and not waiter.done() and waiter.get_loop() is running_loop():
            waiter.set_result(None)
        await self._let_go(asyncio.get_running_loop())

    async def _let_go(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """End the call if it was opened on `loop` (the running one), and
        await gRPC's end of it; the stream itself stays as it is (open
        unless closed): its next read opens a call after `last_seq`."""
        if self._call is None or loop is None or self._call_loop is not loop:
            return
        call, self._call = self._call, None
        # A cancelled call's gRPC operations (its read, its status) complete
        # later inside gRPC, and when that is after the loop closed, gRPC's
        # poller prints "RuntimeError: Event loop is closed". So the call is
        # cancelled under a read, and that read and gRPC's status task for
        # the call are awaited (a pending `__anext__`'s read is its
        # caller's to await). The status tasks of streams opened on this loop
        # after this one cannot be told apart: one still open keeps this
        # wait to its bound.
        drain = None if self._reading else asyncio.ensure_future(call.read())
        if drain is not None:
            await asyncio.sleep(0)  # the read starts: its operation is in flight
        call.cancel()
        ending = _status_tasks() - self._other_status_tasks
        if drain is not None:
            ending.add(drain)
        if ending:
            await asyncio.wait(ending, timeout=_DRAIN_TIMEOUT)
        if drain is not None:
            if not drain.done():
                drain.cancel()
            elif not drain.cancelled():
                drain.exception()  # retrieved: the cancel's own error

    def _start(self) -> Any:
        # gRPC's status tasks of other calls, already there: not this one's.
        self._other_status_tasks = _status_tasks()
        call = super()._start()
        self._call_loop = asyncio.get_running_loop()
        return call

    async def __anext__(self) -> E:
        while True:
            if self._closed.is_set():
                raise StopAsyncIteration
            if self._call is not None and self._call_loop is not asyncio.get_running_loop():
                self._leave_call()
            if self._call is None:
                if self._reach is not None:
                    await self._reach(self._cursor.method)  # never reached: Unavailable
                    self._reach = None
                    continue  # closed meanwhile?
                self._call = self._start()
            call = self._call
            self._reading = True
            try:
                msg = await call.read()
            except asyncio.CancelledError:
                if self._closed.is_set():
                    raise StopAsyncIteration from None
                raise
            except grpc.RpcError as exc:
                self._drop(call)
                step = self._failed(exc, self._closed.is_set())
                if step in (Step.FALLBACK, Step.RESET):
                    continue
            else:
                if msg is not _EOF:
                    item: Optional[E] = self._cursor.accept(msg)
                    if item is None:
                        continue
                    return item
                self._drop(call)
                step = self._ended(self._closed.is_set())
            finally:
                self._reading = False
            if step is Step.STOP:
                raise StopAsyncIteration
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait({waiter}, timeout=self._delay())
            finally:
                self._waiter = None
                waiter.cancel()

    def _leave_call(self) -> None:
        """At a read on another loop than the call's: a call whose loop has
        closed (without `_let_go`: its loop did not shut down its async
        generators) is left, and a new one opened here; RuntimeError for
        one whose loop is still open."""
        loop = self._call_loop
        if loop is not None and not loop.is_closed():
            raise RuntimeError(
                "this stream's call belongs to another event loop, which is still "
                "open: read it on that loop"
            )
        self._call = None

    def _drop(self, call: Any) -> None:
        if self._call is call:
            self._call = None
        call.cancel()


def _status_tasks() -> set[asyncio.Task[Any]]:
    """gRPC's tasks (on this loop) that wait for a streaming call's status:
    a call's last operation. Found by name (gRPC has no handle for them);
    none if a gRPC version names them otherwise."""
    return {
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "_AioCall._handle_status_once_received"
    }


class AsyncCompletionStream(_AsyncStream[Completion]):
    """A reconnecting async iterator over one session's completions.

    `last_seq` is the seq of the last completion yielded.
    """


class AsyncSessionEventStream(_AsyncStream[SessionEvent]):
    """A reconnecting async iterator over one session's `Completion`s and
    `Progress` reports (see `errand.Client.session_events`)."""

    @property
    def legacy(self) -> bool:
        """True when the server had no SessionEvents and Completions is followed."""
        return bool(getattr(self._cursor, "legacy", False))
