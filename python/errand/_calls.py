"""One assignment's call on a worker, and its outcome back to the stream (not public).

A plain function runs on a `CallPool` thread (`run_plain`), an `async def`
one in a task of its own on the event loop (`run_async`); either way the
outcome becomes one `WorkerMessage` (the return value as JSON, or the
exception as a FAILED result) that `Done` puts on the stream's outgoing
queue, unless the call was cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import Any, Coroutine, Optional

from errand._jsonable import encode
from errand._pool import Call
from errand.context import Summarized, TaskContext, _current
from errand.errors import ToolFailure
from errand.tool import ToolDef
from errand.v1 import errand_pb2 as pb

log = logging.getLogger("errand.worker")


class Running:
    """A call in progress: its context, and its asyncio task if `async def`
    or its pool call if plain."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.task: Optional[asyncio.Task[None]] = None
        self.call: Optional[Call] = None

    def cancel(self, reason: str) -> None:
        """On the loop. A plain call's thread stops counting against the
        worker's `max_concurrency`: the server has given its slot to the next
        task, which should not wait for a tool that ignores `cancelled`."""
        self.ctx.cancel_reason = reason
        self.ctx.cancelled.set()
        if self.task is not None:
            self.task.cancel()
        if self.call is not None:
            self.call.abandon()


class Done:
    """Hands finished calls back to the stream, on the event loop.

    Plain functions finish on pool threads: their results queue here and the
    loop is woken once for all that queued meanwhile, not once per call."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        running: dict[str, Running],
        outgoing: asyncio.Queue[Optional[pb.WorkerMessage]],
    ) -> None:
        self._loop = loop
        self._running = running
        self._outgoing = outgoing
        self._lock = threading.Lock()
        #: Set when the connection closes: no new assignment starts.
        self.closing = False
        # From pool threads, in order: (None, progress), (entry, its result),
        # or (entry, None): the call ended without one (cancelled before it ran).
        self._queued: list[tuple[Optional[Running], Optional[pb.WorkerMessage]]] = []

    def send(self, msg: pb.WorkerMessage) -> None:
        """Puts a message (progress) on the stream, from the loop or any
        thread; from a thread in order with that thread's result."""
        if running_loop_is(self._loop):
            self._outgoing.put_nowait(msg)
        else:
            self._enqueue(None, msg)

    def forget(self, entry: Running) -> None:
        """On the loop: the call ended without a result to send."""
        if self._running.get(entry.ctx.task_id) is entry:
            del self._running[entry.ctx.task_id]

    def finish(self, entry: Running, msg: pb.WorkerMessage) -> None:
        """On the loop: send the call's result unless it was cancelled."""
        self.forget(entry)
        if not entry.ctx.cancelled.is_set():
            self._outgoing.put_nowait(msg)

    def finish_threadsafe(self, entry: Running, msg: Optional[pb.WorkerMessage]) -> None:
        """From a pool thread: `finish` on the loop, batched; `forget` if `msg` is None."""
        self._enqueue(entry, msg)

    def _enqueue(self, entry: Optional[Running], msg: Optional[pb.WorkerMessage]) -> None:
        with self._lock:
            self._queued.append((entry, msg))
            if len(self._queued) > 1:
                return  # a wake-up is already on its way
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            # The loop closed: the worker stopped, nobody to tell. Drop what
            # queued, or a tool still reporting would pile messages up for ever.
            with self._lock:
                self._queued.clear()

    def _drain(self) -> None:
        with self._lock:
            batch, self._queued = self._queued, []
        for entry, msg in batch:
            if entry is None:
                self._outgoing.put_nowait(msg)
            elif msg is None:
                self.forget(entry)
            else:
                self.finish(entry, msg)


def running_loop_is(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def failed(ctx: TaskContext, code: str, message: str) -> pb.WorkerMessage:
    """A FAILED result for the call of `ctx`; texts that are not valid UTF-8
    (lone surrogates, as from `os.fsdecode`) are escaped, not refused."""
    error = pb.ToolError(code=utf8(code), message=utf8(message))
    return pb.WorkerMessage(
        result=pb.TaskResult(task_id=ctx.task_id, error=error, attempt=ctx.attempt)
    )


def result(ctx: TaskContext, value: Any) -> pb.WorkerMessage:
    """The result of the call of `ctx` that returned `value` (JSON, with the
    summary of a `Summarized`); FAILED with `invalid_result` if it is not
    JSON serialisable, saying where (`errand._jsonable.encode`, the encoder
    of arguments and progress details too: Enum keys and values as their
    values; a NaN, a key JSON cannot carry or two keys it writes alike
    refused).

    Never raises: whatever the value does (a `model_dump` that raises, nesting
    too deep, text that is not UTF-8), the call still answers."""
    try:
        summary = ""
        if isinstance(value, Summarized):
            value, summary = value.value, value.summary
        result_json = encode(value, "the result is not JSON serialisable:", "result")
        msg = pb.TaskResult(
            task_id=ctx.task_id, result_json=result_json, attempt=ctx.attempt, summary=summary
        )
    except UnicodeError as exc:  # text protobuf cannot carry (lone surrogates)
        return not_serialisable(ctx, text_of(exc))
    except (TypeError, ValueError) as exc:  # said by `encode`, naming where
        return failed(ctx, "invalid_result", text_of(exc))
    except Exception as exc:  # the tool's own code raised (a model_dump, say): logged as a raise
        log.warning("the result of task %s could not be encoded", ctx.task_id, exc_info=exc)
        return not_serialisable(ctx, f"{type(exc).__name__}: {text_of(exc)}")
    return pb.WorkerMessage(result=msg)


def not_serialisable(ctx: TaskContext, why: str) -> pb.WorkerMessage:
    """A result JSON cannot carry: `invalid_result`, as the server's code for
    every result it refuses (too large, not JSON) and ours for NaN."""
    return failed(ctx, "invalid_result", f"the result is not JSON serialisable: {why}")


def outcome_of_error(spec: ToolDef, ctx: TaskContext, exc: BaseException) -> pb.WorkerMessage:
    """The FAILED result of a call that raised `exc`, logged with its
    traceback (a `ToolFailure`, the tool's own answer, is not)."""
    if isinstance(exc, ToolFailure):
        return failed(ctx, str(exc.code), str(exc.message))
    # The model sees only the short message; whoever runs the worker, where
    # it raised (WARNING: shown by logging's defaults too).
    log.warning("tool %s (task %s) raised %r", spec.name, ctx.task_id, exc, exc_info=exc)
    return failed(ctx, "tool_error", f"{type(exc).__name__}: {text_of(exc)}")


def text_of(exc: BaseException) -> str:
    """`str(exc)`, or what can be said when its `__str__` raises."""
    try:
        return str(exc)
    except Exception as err:
        return f"<its text could not be made: {type(err).__name__}>"


def utf8(text: str) -> str:
    """`text`, with what UTF-8 cannot encode (lone surrogates) backslash-escaped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def run_plain(
    spec: ToolDef, args: list[Any], kwargs: dict[str, Any], entry: Running, done: Done
) -> None:
    """On a pool thread: runs a plain function, encodes its outcome there
    (off the loop), and hands it to the loop. Whatever it raises (even
    SystemExit) is the call's FAILED result, not the thread's end. A call
    cancelled while it waited for a thread does not start (the server has
    given up on it, and its thread is better spent on the calls behind it)."""
    ctx = entry.ctx
    if ctx.cancelled.is_set():
        done.finish_threadsafe(entry, None)
        return
    token = _current.set(ctx)
    try:
        value = spec.fn(*args, **kwargs)
    except BaseException as exc:
        done.finish_threadsafe(entry, outcome_of_error(spec, ctx, exc))
        return
    finally:
        _current.reset(token)
    done.finish_threadsafe(entry, result(ctx, value))


async def run_async(
    spec: ToolDef, args: list[Any], kwargs: dict[str, Any], entry: Running, done: Done
) -> None:
    """In the call's own task: runs an `async def` tool and hands its outcome
    to `done`; a cancelled call (by the server, or a disconnect) sends none."""
    ctx = entry.ctx
    _current.set(ctx)  # this task's own context
    try:
        value = await spec.fn(*args, **kwargs)
    except asyncio.CancelledError:
        done.forget(entry)
        return
    except BaseException as exc:
        done.finish(entry, outcome_of_error(spec, ctx, exc))
        if not isinstance(exc, Exception):
            raise
        return
    done.finish(entry, result(ctx, value))


if sys.version_info >= (3, 12):

    def start_task(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Runs an `async def` tool's call in a task of its own that starts at
        once (eagerly), so a call that never waits ends here, with no turn of
        the event loop in between; one that waits goes on as any task."""
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)

else:

    def start_task(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.ensure_future(coro)
