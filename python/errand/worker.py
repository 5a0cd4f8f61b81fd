"""`Worker`: serve `@async_tool` functions to an errand server.

    from errand import Worker, async_tool

    @async_tool
    def research_topic(topic: str) -> str:
        \"\"\"Research a topic thoroughly and return detailed findings.\"\"\"
        return f"Findings about {topic}..."

    Worker("127.0.0.1:7466", tools=[research_topic], max_concurrency=4).run()

A worker holds one `WorkerService.Connect` stream: it registers its tools, runs
each assignment (plain functions on a thread pool of `max_concurrency`
threads, `async def` ones on its event loop), sends back the return value as
JSON or the exception text as a FAILED result, stops a task the server
cancels, and reconnects with backoff when the server goes away or says to
try later (RESOURCE_EXHAUSTED: a limit of connected workers; after a rate
limit, when its retry-after-ms says), with a WARNING that says so.

A running tool can see its task through `errand.current_task()`; a plain
function that runs long should poll `current_task().cancelled` (a
`threading.Event`) so that cancellation reaches it (one cancelled while it
waits for a thread does not start). An `async def` tool is cancelled with
`asyncio.CancelledError`.

Progress, resume and summaries: see `errand.context`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Callable, Optional

import grpc
import grpc.aio

from errand import _calls, _outgoing, _retry
from errand._calls import Done, Running, failed
from errand._common import MAX_SEND_MESSAGE_BYTES, Backoff, PathLike, connection
from errand._connect import CONNECT_TIMEOUT, no_server, wait_ready_async
from errand._loop import running_loop
from errand._outgoing import DEFAULT_MAX_MESSAGE_BYTES
from errand._pool import CallPool
from errand.context import (
    Summarized,
    TaskContext,
    current_task,
    report_progress,
    resume_detail,
)
from errand.errors import ErrandError, RpcError, Unavailable, error_class, from_grpc
from errand.tool import ToolDef, tool_def
from errand.v1 import errand_pb2 as pb
from errand.v1 import errand_pb2_grpc as pb_grpc

_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # not in grpc-stubs

__all__ = [
    "Summarized",
    "TaskContext",
    "Worker",
    "current_task",
    "report_progress",
    "resume_detail",
]


log = logging.getLogger("errand.worker")


class Worker:
    """Serves tools to an errand server over one reconnecting stream.

    Args:
        target: "host:port" of the server; defaults to $ERRAND_SERVER, then
            127.0.0.1:7466.
        tools: functions (decorated with `@async_tool` or plain) to serve.
        max_concurrency: most calls run at once; the server sends no more. A
            plain call cancelled while it runs frees its slot at once: if it
            goes on running, it does not count (up to as many again).
        name: worker name for the server's logs (default host:pid).
        backoff: delays between reconnection attempts.
        metadata: extra gRPC metadata sent on the stream.
        token: bearer token (a worker token from `errand token new`), sent as
            `authorization: Bearer <token>` on the Connect stream and each reconnect;
            defaults to $ERRAND_TOKEN ("" sends none).
        tls_ca: connect with TLS, trusting this CA certificate (a PEM file);
            defaults to $ERRAND_TLS_CA. A target starting with https:// uses
            TLS with the system's roots.
        tls_cert, tls_key: the client certificate and its key (PEM files),
            for servers that require mutual TLS; default $ERRAND_TLS_CERT and
            $ERRAND_TLS_KEY. Either one implies TLS.
        tls_domain: the name the server's certificate must carry, instead of
            the target's host; default $ERRAND_TLS_DOMAIN.
    """

    def __init__(
        self,
        target: Optional[str] = None,
        *,
        tools: Iterable[Callable[..., Any]] = (),
        max_concurrency: int = 4,
        name: Optional[str] = None,
        backoff: Optional[Backoff] = None,
        metadata: Optional[Sequence[tuple[str, str]]] = None,
        token: Optional[str] = None,
        tls_ca: Optional[PathLike] = None,
        tls_cert: Optional[PathLike] = None,
        tls_key: Optional[PathLike] = None,
        tls_domain: Optional[str] = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._conn = connection(
            target,
            token=token,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_domain=tls_domain,
            metadata=metadata,
        )
        self.target = self._conn.target
        self.max_concurrency = max_concurrency
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.worker_id = ""
        # The most bytes one message to the server may take: the server says
        # in Registered; gRPC's default until it does (or if it does not).
        self._max_message = DEFAULT_MAX_MESSAGE_BYTES
        self._backoff = backoff or Backoff(initial=0.1, maximum=2.0)
        self._metadata = self._conn.metadata
        self._tools: dict[str, ToolDef] = {}
        for fn in tools:
            self.add_tool(fn)
        self._cond = threading.Condition()
        self._registrations = 0
        self._error: Optional[BaseException] = None
        self._stopping = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._wake: Optional[asyncio.Event] = None
        self._thread: Optional[threading.Thread] = None
        self._started = False
        self._fail_fast = 0.0  # seconds start() gives the first connection
        # The live connection's outgoing queue (a later Register goes there).
        self._live: Optional[asyncio.Queue[Optional[pb.WorkerMessage]]] = None
        #: Tools added after start not yet answered for (see `_add_spec`).
        self._tickets: list[_Ticket] = []
        #: The live connection's Registers not answered yet, oldest first:
        #: the tickets each one answers for.
        self._asked: collections.deque[list[_Ticket]] = collections.deque()

    # -- configuration ---------------------------------------------------------
    def add_tool(self, fn: Callable[..., Any]) -> None:
        """Serve one more tool.

        Before `run()`/`start()`, it is registered with the others. After, it
        is registered on the worker's live stream (a later Register: running
        calls go on), and, called from a thread other than the worker's
        loop, this waits until the server has answered, up to 30 s: it
        raises the server's refusal (RegisterRefused) as the errand
        exception of its status code, e.g. FailedPrecondition for another
        definition of a tool connected workers serve, ResourceExhausted for
        a result budget over the server's limit; the worker goes on serving
        its other tools and running calls, and the refused tool is not
        served (nor registered again on a reconnection). Unavailable on
        timeout. While the worker is reconnecting, the tool is registered
        with the next connection. ValueError when another function already
        has its name.
        """
        self._add_spec(tool_def(fn))

    def _add_spec(self, spec: ToolDef) -> None:
        if spec.name in self._tools:
            if self._tools[spec.name].fn is not spec.fn:
                raise ValueError(f"two tools are named {spec.name!r}")
            self._tools[spec.name] = spec
            return
        if not getattr(self, "_started", False):
            self._tools[spec.name] = spec
            return
        ticket = _Ticket(spec)
        with self._cond:
            # Answered by this Register (Registered or RegisterRefused), or
            # by a reconnection's, which lists the new tool too.
            self._tools[spec.name] = spec
            self._tickets.append(ticket)
        loop, live = self._loop, self._live
        if loop is None or live is None or loop.is_closed():
            return  # not connected: the next connection registers it
        try:
            loop.call_soon_threadsafe(self._register_again, live, ticket)
        except RuntimeError:
            return  # the loop closed meanwhile: nothing serves any tool
        if running_loop() is loop or self._stopping.is_set():
            return  # the worker's own loop cannot wait for itself
        with self._cond:
            answered = self._cond.wait_for(
                lambda: ticket.answered or self._error is not None or self._done(),
                _LATE_REGISTER_TIMEOUT,
            )
            if ticket.refusal is not None:
                raise ticket.refusal
            if not ticket.answered and self._error is not None:
                raise self._error
        if not answered or not ticket.answered:
            raise Unavailable(
                grpc.StatusCode.UNAVAILABLE,
                f"tool {spec.name!r} not registered with {self.target} within "
                f"{_LATE_REGISTER_TIMEOUT}s",
                "Connect",
            )

    def _register_again(
        self, live: asyncio.Queue[Optional[pb.WorkerMessage]], ticket: _Ticket
    ) -> None:
        """On the loop: a later Register of the ticket's tool on `live`, if it
        is still the connection's and the ticket is not in one of its
        Registers already (else the reconnection's Register lists it)."""
        if live is not self._live or ticket.sent_on is live or ticket.answered:
            return
        ticket.sent_on = live
        # The new tool alone: a later Register adds the tools it lists, and
        # one refused tool then refuses no other.
        live.put_nowait(self._register_message([ticket.spec]))
        self._asked.append([ticket])

    def _answer(self, refusal: Optional[RpcError]) -> None:
        """On the loop: the server answered the oldest Register not yet
        answered on this connection (Registered, or RegisterRefused)."""
        if not self._asked:
            if refusal is not None:
                log.warning("errand worker: a registration was refused: %s", refusal.message)
            return
        tickets = self._asked.popleft()
        with self._cond:
            for ticket in tickets:
                if ticket.answered:
                    continue
                ticket.answered = True
                ticket.refusal = refusal
                if ticket in self._tickets:
                    self._tickets.remove(ticket)
                if refusal is not None and self._tools.get(ticket.spec.name) is ticket.spec:
                    # Not served: the next connection does not register it.
                    del self._tools[ticket.spec.name]
            self._cond.notify_all()
        if refusal is not None:
            log.warning("errand worker: registration refused: %s", refusal.message)

    @property
    def tools(self) -> dict[str, ToolDef]:
        return dict(self._tools)

    @property
    def registrations(self) -> int:
        """How many times the server has answered Registered (1 + reconnects)."""
        with self._cond:
            return self._registrations

    @property
    def error(self) -> Optional[BaseException]:
        """The error that stopped the worker for good, if any."""
        return self._error

    # -- running ---------------------------------------------------------------
    def run(self) -> None:
        """Serve until `stop()` is called (from another thread or a signal handler).

        Raises the error that made the server refuse the worker, e.g.
        InvalidArgument for a bad tool schema. Ctrl-C ends it with
        KeyboardInterrupt, as Python's own, without asyncio's chained
        CancelledError.
        """

        async def main() -> None:
            # asyncio.run's SIGINT handler runs only once the main thread runs
            # Python again; a Ctrl-C taken by one of gRPC's threads left the
            # loop asleep in select(), the worker deaf to it until some I/O
            # came. A tick on the main thread bounds that wait.
            loop = asyncio.get_running_loop()
            tick: Optional[asyncio.TimerHandle] = None

            def again() -> None:
                nonlocal tick
                tick = loop.call_later(SIGNAL_TICK, again)

            if threading.current_thread() is threading.main_thread():
                again()
            try:
                await self.run_async()
            finally:
                if tick is not None:
                    tick.cancel()

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            # asyncio.run raises it while it handles the CancelledError of the
            # run it cancelled: that chain is asyncio's, not the user's, error.
            raise KeyboardInterrupt from None

    async def run_async(self) -> None:
        """`run()` for code that already has an event loop.

        Cancelled (as `asyncio.run` cancels what still runs as it ends), it
        closes its stream as `stop()` does and raises CancelledError, which is
        not recorded as `error`: it may run again, on a later loop."""
        if not self._tools:
            raise ValueError("a worker needs at least one tool")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._stopping.is_set():
            return
        self._error = None  # a run after one that ended (its loop ended, say) starts afresh
        pool = CallPool(self._loop, self.max_concurrency, f"errand-{self.name}")
        try:
            await self._serve(pool)
        except asyncio.CancelledError:
            # Cancelled, as asyncio.run cancels what still runs as it ends:
            # not an error that stopped the worker for good (`error`); it
            # may run again, on another loop.
            raise
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            pool.shutdown()
            with self._cond:
                self._cond.notify_all()

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> Worker:
        """Run in a background (daemon) thread; by default wait until registered.

        Raises the server's refusal, or Unavailable when not registered within
        `timeout` seconds (the worker is then stopped); with no server at the
        target, Unavailable("no errand server at ...") within a few seconds.
        """
        if self._thread is not None:
            raise RuntimeError("the worker was already started")
        self._fail_fast = min(CONNECT_TIMEOUT, timeout) if wait else 0.0
        self._started = True
        self._thread = threading.Thread(target=self._thread_main, name="errand-worker", daemon=True)
        self._thread.start()
        if wait and not self.wait_registered(timeout):
            self.stop()
            if self._error is not None:
                raise self._error
            raise Unavailable(
                grpc.StatusCode.UNAVAILABLE,
                f"not registered with {self.target} within {timeout}s",
                "Connect",
            )
        return self

    def _thread_main(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self._error = exc
            if self._fail_fast and self.registrations == 0:
                # start(wait=True) is waiting for the first registration: it
                # raises this error itself, which is report enough.
                log.debug("errand worker stopped before registering: %s", exc)
            else:
                log.error("errand worker stopped: %s", exc)

    def wait_registered(self, timeout: Optional[float] = None, *, count: int = 1) -> bool:
        """Block until the server has answered Registered `count` times in all.

        Returns False on timeout; raises the error that stopped the worker.
        """
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._registrations >= count or self._error is not None or self._done(),
                timeout,
            )
            if self._error is not None and self._registrations < count:
                raise self._error
            return ok and self._registrations >= count

    def _done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def stop(self, timeout: Optional[float] = 10.0) -> None:
        """Stop serving: close the stream (the server gives running tasks to other
        workers) and, when started with `start()`, join the thread."""
        self._stopping.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:
                pass  # the loop closed meanwhile
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait until a worker started with `start()` stops (KeyboardInterrupt stops it)."""
        thread = self._thread
        if thread is None:
            return
        try:
            thread.join(timeout)
        except KeyboardInterrupt:
            self.stop()
            raise

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the stream --------------------------------------------------------------
    async def _serve(self, pool: CallPool) -> None:
        assert self._wake is not None
        while not self._stopping.is_set():
            channel = self._conn.aio_channel()
            if self._fail_fast and self.registrations == 0:
                # start(wait=True): no server at all is an error, not a retry.
                state = await wait_ready_async(channel, self._fail_fast)
                if state is not grpc.ChannelConnectivity.READY:
                    await channel.close(None)
                    raise no_server(self.target, self._conn, "Connect", state)
            what, error = "", None
            try:
                await self._connection(channel, pool)
            except grpc.RpcError as exc:
                if not _retry.transient(exc):
                    raise from_grpc(exc, "Connect", self.target) from None
                what, error = _retry.broke(exc, self.target), exc
            except _StreamEnded:
                what = f"server {self.target} ended the stream"
            finally:
                await channel.close(None)
            if self._stopping.is_set():
                break
            delay = _retry.pause(error, self._backoff)  # retry-after-ms, else backoff
            if what:
                log.warning(
                    "errand worker %s: %s; connecting again in %.2fs", self.name, what, delay
                )
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def _register_message(self, specs: Optional[list[ToolDef]] = None) -> pb.WorkerMessage:
        """A Register of `specs`, by default of every tool."""
        tools = [
            pb.Tool(
                name=t.name,
                description=t.description,
                input_schema_json=t.input_schema_json,
                timeout_ms=t.timeout_ms,
                queue_timeout_ms=t.queue_timeout_ms,
                delivery=int(t.delivery),  # type: ignore[arg-type]
                dedup=int(t.dedup),  # type: ignore[arg-type]
                result_budget_bytes=t.result_budget_bytes,
                fallback=t.fallback.to_pb() if t.fallback is not None else None,
                cancellable_by_model=t.cancellable_by_model,
            )
            # A copy: a tool added from another thread meanwhile (add_tool).
            for t in (list(self._tools.values()) if specs is None else specs)
        ]
        return pb.WorkerMessage(
            register=pb.Register(
                worker_name=self.name, tools=tools, max_concurrency=self.max_concurrency
            )
        )

    async def _connection(self, channel: grpc.aio.Channel, pool: CallPool) -> None:
        assert self._wake is not None
        outgoing: asyncio.Queue[Optional[pb.WorkerMessage]] = asyncio.Queue()
        with self._cond:
            # Every tool, those added and not answered for yet included.
            outgoing.put_nowait(self._register_message())
            self._asked = collections.deque([list(self._tickets)])
            for ticket in self._tickets:
                ticket.sent_on = outgoing
        self._live = outgoing

        async def requests() -> AsyncIterator[pb.WorkerMessage]:
            while True:
                msg = await outgoing.get()
                if msg is None:
                    return
                # Every message, by the one rule: none may end the stream.
                fitted = _outgoing.fit(msg, self._max_message)
                if fitted is not None:
                    yield fitted

        stub = pb_grpc.WorkerServiceStub(channel)
        call = stub.Connect(requests(), metadata=self._metadata, wait_for_ready=True)
        running: dict[str, Running] = {}
        loop = asyncio.get_running_loop()
        done = Done(loop, running, outgoing)
        # One reader task for the whole stream (not one per message): stop()
        # ends it by ending the stream.
        reader = asyncio.ensure_future(self._read(call, running, outgoing, pool, done))
        stop_wait = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({reader, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # the stream's end or error
        finally:
            self._live = None
            stop_wait.cancel()
            done.closing = True  # assignments from now on are not started
            # The server gives this connection's tasks to other workers as new
            # attempts: results of these runs would be ignored, so stop them.
            for entry in list(running.values()):
                entry.cancel("disconnected")
            # Close the stream as the protocol does: end the requests and let
            # the server end the stream, which the reader sees. Cancelling it
            # instead leaves gRPC operations (the reader's read, the call's
            # status) to complete after this loop may have closed, and gRPC's
            # poller then prints "RuntimeError: Event loop is closed".
            outgoing.put_nowait(None)
            await _end(reader, _CLOSE_TIMEOUT, call.cancel)

    async def _read(
        self,
        call: Any,
        running: dict[str, Running],
        outgoing: asyncio.Queue[Optional[pb.WorkerMessage]],
        pool: CallPool,
        done: Done,
    ) -> None:
        while True:
            cmd = await call.read()
            if cmd is _EOF:
                raise _StreamEnded
            kind = cmd.WhichOneof("kind")
            if kind == "assignment":
                self._spawn(cmd.assignment, running, outgoing, pool, done)
            elif kind == "registered":
                self.worker_id = cmd.registered.worker_id
                said = cmd.registered.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
                self._max_message = min(said, MAX_SEND_MESSAGE_BYTES)
                self._backoff.reset()
                with self._cond:
                    self._registrations += 1
                    self._cond.notify_all()
                self._answer(None)
                log.info("errand worker registered as %s", self.worker_id)
            elif kind == "register_refused":
                refused = cmd.register_refused
                self._answer(refusal(refused.code, refused.message))
            elif kind == "cancel":
                entry = running.get(cmd.cancel.task_id)
                if entry is not None:
                    entry.cancel(cmd.cancel.reason or "cancelled")

    def _spawn(
        self,
        assignment: pb.Assignment,
        running: dict[str, Running],
        outgoing: asyncio.Queue[Optional[pb.WorkerMessage]],
        pool: CallPool,
        done: Done,
    ) -> None:
        if done.closing:
            return  # the stream is closing: the server gives it to another worker
        ctx = TaskContext(
            task_id=assignment.task_id,
            session_id=assignment.session_id,
            tool=assignment.tool,
            attempt=assignment.attempt,
            timeout_ms=assignment.timeout_ms,
            resume_detail_json=assignment.resume_detail_json,
            _send=done.send,
            _max_message=self._max_message,
        )
        spec = self._tools.get(assignment.tool)
        if spec is None:
            outgoing.put_nowait(
                failed(ctx, "unknown_tool", f"this worker does not serve {assignment.tool!r}")
            )
            return
        try:
            arguments = json.loads(assignment.arguments_json or "{}")
            if not isinstance(arguments, dict):
                raise TypeError("arguments must be a JSON object")
            args, kwargs = spec.bind(arguments)
        except Exception as exc:
            outgoing.put_nowait(failed(ctx, "invalid_arguments", f"{type(exc).__name__}: {exc}"))
            return
        entry = Running(ctx)
        running[ctx.task_id] = entry
        if spec.is_async:
            entry.task = _calls.start_task(_calls.run_async(spec, args, kwargs, entry, done))
        else:
            # A plain function runs on the pool (which wakes a thread only when
            # none is awake) and hands its result back through `done`, which
            # wakes the loop once per batch.
            entry.call = pool.submit(_calls.run_plain, spec, args, kwargs, entry, done)


#: Most seconds `add_tool` on a started worker waits for the server's answer.
_LATE_REGISTER_TIMEOUT = 30.0

#: Most seconds a closing connection waits for the server to end its stream
#: (a round trip), then as long again once it cancelled the stream itself.
_CLOSE_TIMEOUT = 2.0


async def _end(task: asyncio.Future[Any], timeout: float, stop: Callable[[], Any]) -> None:
    """Waits up to `timeout` seconds for `task` to end; if it has not, calls
    `stop()` and waits as long again, then cancels it. Retrieves its outcome,
    so nothing is left unseen."""
    for last_resort in (stop, task.cancel):
        await asyncio.wait({task}, timeout=timeout)
        if task.done():
            break
        last_resort()
    if task.done() and not task.cancelled():
        task.exception()


class _Ticket:
    """A tool added to a started worker, until the server answers for it."""

    __slots__ = ("answered", "refusal", "sent_on", "spec")

    def __init__(self, spec: ToolDef) -> None:
        self.spec = spec
        self.answered = False
        self.refusal: Optional[RpcError] = None
        #: The connection's queue of the Register that lists it.
        self.sent_on: Optional[asyncio.Queue[Optional[pb.WorkerMessage]]] = None


def refusal(code: int, message: str) -> RpcError:
    """The errand exception of a RegisterRefused: the class of its status code,
    as for the same status on any call."""
    status = next((s for s in grpc.StatusCode if s.value[0] == code), grpc.StatusCode.UNKNOWN)
    return error_class(status)(status, message, "Connect")


class _StreamEnded(ErrandError):
    """The server closed the worker stream without an error (it is shutting down)."""


#: Seconds between a blocking `Worker.run()`'s wakes of its main thread, so
#: that a Ctrl-C another thread took is seen within it.
SIGNAL_TICK = 0.5


def __getattr__(name: str) -> Any:
    # `AsyncToolManager` lives in errand.manager now; it was importable from here.
    if name == "AsyncToolManager":
        from errand.manager import AsyncToolManager

        return AsyncToolManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
