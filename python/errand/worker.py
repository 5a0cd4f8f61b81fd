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
cancels, and reconnects with backoff when the server goes away.

A running tool can see its task through `errand.current_task()`; a plain
function that runs long should poll `current_task().cancelled` (a
`threading.Event`) so that cancellation reaches it. An `async def` tool is
cancelled with `asyncio.CancelledError`.

Progress, resume and summaries: see `errand.context`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

import grpc
import grpc.aio

from errand._common import RETRYABLE, Backoff, PathLike, connection
from errand._connect import CONNECT_TIMEOUT, no_server, wait_ready_async
from errand._jsonable import to_json as _to_json
from errand.context import (
    Summarized,
    TaskContext,
    _current,
    current_task,
    report_progress,
    resume_detail,
)
from errand.errors import ErrandError, ToolFailure, Unavailable, from_grpc
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


class _Running:
    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.task: Optional[asyncio.Task[None]] = None

    def cancel(self, reason: str) -> None:
        self.ctx.cancel_reason = reason
        self.ctx.cancelled.set()
        if self.task is not None:
            self.task.cancel()


class Worker:
    """Serves tools to an errand server over one reconnecting stream.

    Args:
        target: "host:port" of the server; defaults to $ERRAND_SERVER, then
            127.0.0.1:7466.
        tools: functions (decorated with `@async_tool` or plain) to serve.
        max_concurrency: most calls run at once; the server sends no more.
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

    # -- configuration ---------------------------------------------------------
    def add_tool(self, fn: Callable[..., Any]) -> None:
        """Serve one more tool (before `run()`/`start()`)."""
        if getattr(self, "_started", False):
            raise RuntimeError("add tools before the worker starts")
        spec = tool_def(fn)
        if spec.name in self._tools and self._tools[spec.name].fn is not fn:
            raise ValueError(f"two tools are named {spec.name!r}")
        self._tools[spec.name] = spec

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
        InvalidArgument for a bad tool schema.
        """
        asyncio.run(self.run_async())

    async def run_async(self) -> None:
        """`run()` for code that already has an event loop."""
        if not self._tools:
            raise ValueError("a worker needs at least one tool")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._stopping.is_set():
            return
        executor = ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix=f"errand-{self.name}"
        )
        try:
            await self._serve(executor)
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
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
    async def _serve(self, executor: ThreadPoolExecutor) -> None:
        assert self._wake is not None
        while not self._stopping.is_set():
            channel = self._conn.aio_channel()
            if self._fail_fast and self.registrations == 0:
                # start(wait=True): no server at all is an error, not a retry.
                state = await wait_ready_async(channel, self._fail_fast)
                if state is not grpc.ChannelConnectivity.READY:
                    await channel.close(None)
                    raise no_server(self.target, self._conn.tls, "Connect", state)
            try:
                await self._connection(channel, executor)
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise from_grpc(exc, "Connect") from None
                log.warning("errand worker: stream to %s broke: %s", self.target, exc.code())
            except _StreamEnded:
                log.warning("errand worker: server %s ended the stream", self.target)
            finally:
                await channel.close(None)
            if self._stopping.is_set():
                break
            try:
                await asyncio.wait_for(self._wake.wait(), self._backoff.next())
            except asyncio.TimeoutError:
                pass

    def _register_message(self) -> pb.WorkerMessage:
        tools = [
            pb.Tool(
                name=t.name,
                description=t.description,
                input_schema_json=t.input_schema_json,
                timeout_ms=t.timeout_ms,
                delivery=int(t.delivery),  # type: ignore[arg-type]
                dedup=int(t.dedup),  # type: ignore[arg-type]
                result_budget_bytes=t.result_budget_bytes,
                fallback=t.fallback.to_pb() if t.fallback is not None else None,
                cancellable_by_model=t.cancellable_by_model,
            )
            for t in self._tools.values()
        ]
        return pb.WorkerMessage(
            register=pb.Register(
                worker_name=self.name, tools=tools, max_concurrency=self.max_concurrency
            )
        )

    async def _connection(self, channel: grpc.aio.Channel, executor: ThreadPoolExecutor) -> None:
        assert self._wake is not None
        outgoing: asyncio.Queue[Optional[pb.WorkerMessage]] = asyncio.Queue()
        outgoing.put_nowait(self._register_message())

        async def requests() -> AsyncIterator[pb.WorkerMessage]:
            while True:
                msg = await outgoing.get()
                if msg is None:
                    return
                yield msg

        stub = pb_grpc.WorkerServiceStub(channel)
        call = stub.Connect(requests(), metadata=self._metadata, wait_for_ready=True)
        running: dict[str, _Running] = {}
        stop_wait = asyncio.ensure_future(self._wake.wait())
        try:
            while True:
                read = asyncio.ensure_future(call.read())
                done, _ = await asyncio.wait({read, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if read not in done:
                    read.cancel()
                    return  # stop() was called
                cmd = read.result()
                if cmd is _EOF:
                    raise _StreamEnded
                kind = cmd.WhichOneof("kind")
                if kind == "registered":
                    self.worker_id = cmd.registered.worker_id
                    self._backoff.reset()
                    with self._cond:
                        self._registrations += 1
                        self._cond.notify_all()
                    log.info("errand worker registered as %s", self.worker_id)
                elif kind == "assignment":
                    self._spawn(cmd.assignment, running, outgoing, executor)
                elif kind == "cancel":
                    entry = running.get(cmd.cancel.task_id)
                    if entry is not None:
                        entry.cancel(cmd.cancel.reason or "cancelled")
        finally:
            stop_wait.cancel()
            # The server gives this connection's tasks to other workers as new
            # attempts: results of these runs would be ignored, so stop them.
            for entry in list(running.values()):
                entry.cancel("disconnected")
            outgoing.put_nowait(None)
            call.cancel()

    def _spawn(
        self,
        assignment: pb.Assignment,
        running: dict[str, _Running],
        outgoing: asyncio.Queue[Optional[pb.WorkerMessage]],
        executor: ThreadPoolExecutor,
    ) -> None:
        ctx = TaskContext(
            task_id=assignment.task_id,
            session_id=assignment.session_id,
            tool=assignment.tool,
            attempt=assignment.attempt,
            timeout_ms=assignment.timeout_ms,
            resume_detail_json=assignment.resume_detail_json,
            _send=self._sender(outgoing),
        )
        entry = _Running(ctx)
        running[ctx.task_id] = entry

        async def body() -> None:
            try:
                result = await self._execute(assignment, ctx, executor)
            except asyncio.CancelledError:
                return  # cancelled by the server or disconnected: no result expected
            finally:
                if running.get(ctx.task_id) is entry:
                    del running[ctx.task_id]
            if ctx.cancelled.is_set():
                return
            outgoing.put_nowait(pb.WorkerMessage(result=result))

        entry.task = asyncio.ensure_future(body())

    def _sender(
        self, outgoing: asyncio.Queue[Optional[pb.WorkerMessage]]
    ) -> Callable[[pb.WorkerMessage], None]:
        """Puts a message on this connection's stream, from the loop or any thread."""
        loop = asyncio.get_running_loop()

        def send(msg: pb.WorkerMessage) -> None:
            if running_loop_is(loop):
                outgoing.put_nowait(msg)
            elif not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(outgoing.put_nowait, msg)
                except RuntimeError:
                    pass  # the loop closed meanwhile: the connection is gone

        return send

    async def _execute(
        self, assignment: pb.Assignment, ctx: TaskContext, executor: ThreadPoolExecutor
    ) -> pb.TaskResult:
        def failed(code: str, message: str) -> pb.TaskResult:
            return pb.TaskResult(
                task_id=ctx.task_id,
                error=pb.ToolError(code=code, message=message),
                attempt=ctx.attempt,
            )

        spec = self._tools.get(assignment.tool)
        if spec is None:
            return failed("unknown_tool", f"this worker does not serve {assignment.tool!r}")
        try:
            arguments = json.loads(assignment.arguments_json or "{}")
            if not isinstance(arguments, dict):
                raise TypeError("arguments must be a JSON object")
            args, kwargs = spec.bind(arguments)
        except Exception as exc:
            return failed("invalid_arguments", f"{type(exc).__name__}: {exc}")
        try:
            if spec.is_async:
                token = _current.set(ctx)
                try:
                    value = await spec.fn(*args, **kwargs)
                finally:
                    _current.reset(token)
            else:
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(
                    executor, _call_with_context, ctx, spec, args, kwargs
                )
        except asyncio.CancelledError:
            raise
        except ToolFailure as exc:
            return failed(exc.code, exc.message)
        except Exception as exc:
            log.info("tool %s (task %s) raised %r", spec.name, ctx.task_id, exc)
            return failed("tool_error", f"{type(exc).__name__}: {exc}")
        summary = ""
        if isinstance(value, Summarized):
            value, summary = value.value, value.summary
        try:
            result_json = json.dumps(value, default=_to_json, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            return failed("tool_error", f"the result is not JSON serialisable: {exc}")
        return pb.TaskResult(
            task_id=ctx.task_id, result_json=result_json, attempt=ctx.attempt, summary=summary
        )


def running_loop_is(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _StreamEnded(ErrandError):
    """The server closed the worker stream without an error (it is shutting down)."""


def _call_with_context(
    ctx: TaskContext, spec: ToolDef, args: list[Any], kwargs: dict[str, Any]
) -> Any:
    token = _current.set(ctx)
    try:
        return spec.fn(*args, **kwargs)
    finally:
        _current.reset(token)


def __getattr__(name: str) -> Any:
    # `AsyncToolManager` lives in errand.manager now; it was importable from here.
    if name == "AsyncToolManager":
        from errand.manager import AsyncToolManager

        return AsyncToolManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
