"""`AsyncToolManager`: the seed text's manager, backed by errand.

    from errand import AsyncToolManager, async_tool

    manager = AsyncToolManager(max_workers=4)

    @async_tool(manager)
    def research_topic(topic: str) -> str:
        \"\"\"Research a topic thoroughly and return detailed findings.\"\"\"
        time.sleep(15)
        return f"Findings about {topic}..."

    research_topic(topic="tides")   # -> "Task 7f3e... submitted: ..." at once

The manager is both halves of the seed's design in one object:

- the **worker** that runs the decorated functions (it is a `Worker` with
  `max_concurrency = max_workers`: plain functions on threads, `async def`
  ones natively on its event loop);
- the **agent-side handle**: calling a decorated function submits the call
  through errand in the manager's session and returns the server's
  acknowledgement text at once (task ID, tool, arguments, "do not guess the
  result"); `fn.run(...)` still calls the plain function;
- the **completion callbacks**: it follows its session's completions and
  calls each `on_complete` callback with an `AsyncTaskResult` (task ID, tool
  name, arguments, result or error, elapsed seconds). `AsyncAgent(agent,
  manager)` registers itself as one, an *owning* one.

Acknowledgement (AckCompletions, after which the server may drop a
completion) follows one rule: a completion is acknowledged once the consumer
that owns it has taken it over. A plain callback has taken a result over when
it returns; an owning callback (`add_done_callback(cb, owns=True)`, as an
`AsyncAgent` registers) only when it says so with `delivered(cb, seqs)`, once
its model has the result. Acks are cumulative (every seq up to one), so a
result an owner still holds (queued in a busy agent, held by one not started
yet, or left in one that was closed) holds back the acknowledgement of every
later one too: the server keeps them, and a new stream of the session
replays them.

It connects on first use (the first call, `submit`, `start()` or an
`AsyncAgent`), to `server=` / `target=`, else $ERRAND_SERVER, else
127.0.0.1:7466, and fails fast with `Unavailable` when nothing answers there.
A tool decorated after that first use is registered on the live stream
(`Worker.add_tool`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Callable, Optional

import grpc

from errand._common import encode_arguments, new_session_id
from errand._connect import exiting
from errand._core import by_reference, checked_session_id, outcome
from errand.callables import call_arguments, with_notice
from errand.client import Client, SessionEventStream
from errand.errors import DeadlineExceeded, NotFound
from errand.tool import ToolDef, _hints, renamed, tool_def
from errand.types import Ack, Completion, Progress, Task, TaskStatus, ToolInfo
from errand.worker import Worker

__all__ = ["AsyncTaskResult", "AsyncToolManager"]

log = logging.getLogger("errand.manager")

Callback = Callable[["AsyncTaskResult"], Any]
ProgressCallback = Callable[[Progress], Any]

#: The holder of a result whose owners all went away before delivering it.
_ORPHANED: Callback = lambda result: None  # noqa: E731


@dataclasses.dataclass(frozen=True)
class AsyncTaskResult:
    """What a completion callback gets, as in the seed text.

    Attributes:
        task_id: the task, as the acknowledgement named it.
        tool_name: the tool that ran.
        arguments: the arguments it ran with (a dict).
        result: the tool's return value (parsed JSON) when it succeeded, else None;
            read whole (ReadResult) when it arrived over its result budget.
        error: "[code] message" when it failed, was cancelled or timed out, else None.
        elapsed: seconds from the start of the run to its end.
        status: the final `TaskStatus`.
        completion: the `Completion` it was made from (seq, message, ...).
    """

    task_id: str
    tool_name: str
    arguments: dict[str, Any]
    result: Any
    error: Optional[str]
    elapsed: float
    status: TaskStatus
    completion: Completion

    @property
    def ok(self) -> bool:
        return self.status == TaskStatus.SUCCEEDED

    def text(self) -> str:
        """The text for the model: the result or error, with the task ID."""
        return self.completion.text()

    def __str__(self) -> str:
        return self.text()

    @classmethod
    def from_completion(cls, c: Completion) -> AsyncTaskResult:
        error = f"[{c.error.code}] {c.error.message}" if c.error is not None else None
        if error is None and not c.ok:
            error = f"[{c.status.name.lower()}] the task ended as {c.status.name}"
        arguments = c.arguments
        return cls(
            task_id=c.task_id,
            tool_name=c.tool,
            arguments=arguments if isinstance(arguments, dict) else {},
            result=c.result if c.ok else None,
            error=error,
            elapsed=c.elapsed_ms / 1000.0,
            status=c.status,
            completion=c,
        )


class AsyncToolManager(Worker):
    """Serves `@async_tool(manager)` functions and submits their calls through errand.

    Args:
        max_workers: most calls that run at once in this process (the
            worker's `max_concurrency`), as the seed's ThreadPoolExecutor.
        target: "host:port" of the server (also `server=`); defaults to
            $ERRAND_SERVER, then 127.0.0.1:7466.
        server: another name for `target`.
        session_id: the session the calls are submitted in and whose
            completions the callbacks hear; a fresh random one by default
            (an empty one raises InvalidArgument).
        on_complete: a first completion callback (see `add_done_callback`).
        ack: let the server drop each completion once its consumers have
            taken it over (see the module doc); False: never acknowledge.
        keep_results: how many finished tasks `result()` answers from
            memory (1000); older ones it asks the server for.
        **kwargs: the other `Worker` arguments (token, tls_ca, name, ...).
    """

    def __init__(
        self,
        max_workers: int = 4,
        target: Optional[str] = None,
        *,
        server: Optional[str] = None,
        session_id: Optional[str] = None,
        on_complete: Optional[Callback] = None,
        ack: bool = True,
        keep_results: int = 1000,
        **kwargs: Any,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, not {max_workers!r}")
        if keep_results < 0:
            raise ValueError(f"keep_results must be >= 0, not {keep_results!r}")
        if target and server and target != server:
            raise ValueError("give the server address once: target= or server=")
        super().__init__(target or server, max_concurrency=max_workers, **kwargs)
        self.session_id = new_session_id() if session_id is None else checked_session_id(session_id)
        self.ack = ack
        self._callbacks: list[Callback] = [on_complete] if on_complete is not None else []
        #: The callbacks that own what they are given (see `add_done_callback`).
        self._owners: list[Callback] = []
        #: seq -> the owning callbacks that have been given it and not yet
        #: `delivered` it: the acknowledgement waits for them.
        self._holding: dict[int, list[Callback]] = {}
        #: seq -> its result, while some consumer holds it (to hand it to
        #: the next owner when its last holder goes away undelivered).
        self._held_results: dict[int, AsyncTaskResult] = {}
        #: The highest seq the callbacks have been given, and the highest
        #: acknowledged (or being acknowledged) by this manager.
        self._given_seq = 0
        self._acked_seq = 0
        #: How many times the listener has taken a reset of its stream (the
        #: server lost the session's completions: its seqs started again;
        #: see `_forget_seqs`), and the stream's own count it last took: a
        #: stream whose count differs has reset and not shown a new
        #: completion yet, so no seq of the new server is known.
        self._resets = 0
        self._stream_resets = 0
        #: A hand-over thread's `_resets` when its results were given out.
        self._giving = threading.local()
        self._progress_callbacks: list[ProgressCallback] = []
        self._guard = threading.RLock()
        self._client: Optional[Client] = None
        self._stream: Optional[SessionEventStream] = None
        self._listener: Optional[threading.Thread] = None
        #: How many finished tasks `result()` remembers.
        self.keep_results = keep_results
        self._seen: OrderedDict[str, AsyncTaskResult] = OrderedDict()
        self._seen_cond = threading.Condition()

    @property
    def max_workers(self) -> int:
        return self.max_concurrency

    # -- the agent's side --------------------------------------------------------
    @property
    def client(self) -> Client:
        """The blocking `Client` the manager submits with (in `session_id`)."""
        with self._guard:
            if self._client is None:
                self._client = Client(session_id=self.session_id, _connection=self._conn)
            return self._client

    def ensure_started(self) -> AsyncToolManager:
        """Connect and register the tools, once; then follow the session's completions."""
        with self._guard:
            if self._thread is None:
                return self.start()
            self._follow()
        return self

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> AsyncToolManager:
        """Start serving the tools (as `Worker.start`: by default it waits until
        registered) and following the session's completions."""
        with self._guard:
            if self._tools:
                try:
                    super().start(wait=wait, timeout=timeout)
                except BaseException:
                    # No server yet (or it refused us): the next call tries again,
                    # once the failed attempt's thread has finished recording it.
                    if self._thread is not None:
                        self._thread.join(10)
                    self._thread, self._error, self._started = None, None, False
                    self._stopping.clear()
                    raise
            self._follow()
            if not self.client._core.connected:
                self.client.list_tools()  # connect now: the first tool call answers at once
        return self

    def _follow(self) -> None:
        if self._listener is None:
            made = self._client is None
            # Completions and progress; a server without SessionEvents: its Completions.
            stream = self.client.session_events(self.session_id, fallback=True)
            # The call starts here, not later on the listener thread (and
            # with no server there, Unavailable is raised here).
            try:
                stream._open()
            except BaseException:
                # Not following: what this attempt opened goes (the client's
                # channel too, when it made the client); the next tries afresh.
                stream.close()
                if made:
                    with self._guard:
                        client, self._client = self._client, None
                    if client is not None:
                        client.close()
                raise
            self._stream = stream
            self._listener = threading.Thread(
                target=self._listen, args=(stream,), name="errand-manager", daemon=True
            )
            self._listener.start()

    def submit(
        self, tool_name: str, fn: Optional[Callable[..., Any]] = None, /, **kwargs: Any
    ) -> str:
        """Submit one call of `tool_name` with keyword arguments; returns its task ID.

        The seed's signature. `fn`, when given, is the function that runs the
        call, served as the tool `tool_name` whatever its own name (a lambda
        too; an `@async_tool` function keeps its description and options).
        A function first served once the manager has started is registered
        on its live stream before the submit (`Worker.add_tool`). ValueError
        when another function already serves `tool_name`, or for a name
        that is not 1-64 of [A-Za-z0-9_-].
        """
        if fn is not None:
            self._serve_as(tool_name, fn)
        return self.submit_call(tool_name, kwargs).task_id

    def _serve_as(self, tool_name: str, fn: Callable[..., Any]) -> None:
        """Serve `fn` as the tool `tool_name`, unless it does already."""
        # A decorated function (or the manager's callable for one) carries its
        # ToolDef: the plain function, its description and options.
        own = getattr(fn, "__errand_tool__", None)
        plain = own.fn if isinstance(own, ToolDef) else fn
        served = self._tools.get(tool_name)
        if served is not None:
            if served.fn is not plain:
                raise ValueError(
                    f"tool {tool_name!r} is served by another function ({served.fn!r}), "
                    f"not {fn!r}: give this one another name"
                )
            return
        spec = renamed(own, tool_name) if isinstance(own, ToolDef) else tool_def(fn, name=tool_name)
        self._add_spec(spec)

    def submit_call(self, tool_name: str, arguments: dict[str, Any], **options: Any) -> Ack:
        """Submit one call (arguments as a mapping) and return the whole `Ack`;
        `options` are `Client.submit`'s (delivery=, dedup=, ...)."""
        # As the client encodes them, first: arguments JSON cannot carry are
        # refused (NotJSON) before connecting.
        encode_arguments(arguments, {}, "SubmitTool")
        self.ensure_started()
        ack: Ack = self.client.submit(tool_name, arguments, **options)
        return ack

    def get_task(self, task_id: str) -> Task:
        """A task's state (QUEUED, RUNNING, SUCCEEDED, ...)."""
        return self.client.get_task(task_id)

    def result(self, task_id: str, *, timeout: Optional[float] = None) -> Any:
        """Wait for one of the manager's tasks and return its result.

        Answers from the completions the manager has seen (it remembers the
        last `keep_results`; the server may have dropped them once acked),
        else waits for the task as `Client.result` does.

        Raises TaskFailed when the task did not succeed, DeadlineExceeded
        after `timeout` seconds.
        """
        with self._seen_cond:
            seen = self._seen.get(task_id)
        if seen is not None:
            return self._outcome(seen.completion)
        if self._listener is None:
            return self.client.result(task_id, timeout=timeout)
        try:
            task = self.client.get_task(task_id)
        except NotFound:
            task = None  # acked meanwhile, if it is ours: then it is in _seen
        if task is not None and task.session_id != self.session_id:
            return self.client.result(task_id, timeout=timeout)
        with self._seen_cond:
            if not self._seen_cond.wait_for(lambda: task_id in self._seen, timeout):
                raise DeadlineExceeded(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"task {task_id} did not finish within {timeout}s",
                    "result",
                )
            done = self._seen[task_id].completion
        return self._outcome(done)

    def _outcome(self, done: Completion) -> Any:
        if by_reference(done):  # over its result budget: read it whole
            return json.loads(self.client.read_full_result(done.task_id))
        return outcome(done)

    def _read_whole(self, result: AsyncTaskResult) -> AsyncTaskResult:
        """`result` with its whole value, for a completion delivered over its
        result budget: read before the callbacks run and before it is
        acknowledged. The server keeps such a result after the ack too,
        until its retention; `_seen` keeps the completion only, so that the
        manager holds no more than `keep_results` previews."""
        try:
            value = json.loads(self.client.read_full_result(result.task_id))
        except Exception as exc:  # result() reads it again, and raises what it meets
            log.warning(
                "errand AsyncToolManager: reading the full result of %s failed: %s",
                result.task_id,
                exc,
            )
            return result
        return dataclasses.replace(result, result=value)

    def cancel(self, task_id: str, *, reason: str = "") -> Task:
        """Cancel a task; `reason` reaches the worker and the completion's message."""
        return self.client.cancel(task_id, reason=reason)

    # -- completion callbacks ------------------------------------------------------
    def add_done_callback(self, callback: Callback, *, owns: bool = False) -> None:
        """Call `callback(AsyncTaskResult)` for each completion of the session.

        Callbacks run on the manager's listener thread, in completion order;
        keep them short (hand work to a queue or a loop). An exception is
        logged and does not stop the others.

        With `owns=True` the callback takes each result over, to pass it on
        later (as `AsyncAgent` does, to its model): the manager acknowledges a
        completion only once the callback has called `delivered(callback,
        [seq])` for it. One it never reports as delivered (it raised, it was
        removed, or the process ended first) is never acknowledged. A result
        whose every owner went away without delivering it waits for the next
        owner added, which is given it at once (on a thread of its own, in
        seq order); the server keeps it meanwhile.
        """
        if not callable(callback):
            raise TypeError(f"a completion callback must be callable, not {type(callback)!r}")
        with self._guard:
            self._callbacks.append(callback)
            if not owns:
                return
            self._owners.append(callback)
            waiting = sorted(seq for seq, held in self._holding.items() if held == [_ORPHANED])
            for seq in waiting:
                self._holding[seq] = [callback]
            results = [self._held_results[seq] for seq in waiting]
            resets = self._resets
        if results:
            threading.Thread(
                target=self._hand_over,
                args=(callback, results, resets),
                name="errand-handover",
                daemon=True,
            ).start()

    def _hand_over(self, callback: Callback, results: list[AsyncTaskResult], resets: int) -> None:
        """Gives a new owner the results whose owners went away undelivered,
        given out after `resets` resets (a reset since does not make them
        the new server's: `_given_resets`)."""
        self._giving.resets = resets
        for result in results:
            try:
                callback(result)
            except Exception:
                log.exception("errand AsyncToolManager: on_complete callback %r raised", callback)

    def _given_resets(self) -> int:
        """For an owning callback: how many resets the listener had taken when
        the result it is being given was given out (the epoch its delivery
        is released in, see `_release`). On the listener thread the current
        count; on a hand-over thread the count when its results were taken."""
        resets = getattr(self._giving, "resets", None)
        return self._resets if resets is None else int(resets)

    def remove_done_callback(self, callback: Callback) -> None:
        """Stop calling `callback`. What an owning callback holds is not
        acknowledged (it was not delivered): it goes to the next owner added."""
        with self._guard:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
            if callback not in self._owners:
                return
            self._owners.remove(callback)
            for held in self._holding.values():
                if callback in held:
                    held.remove(callback)
                    if not held:
                        held.append(_ORPHANED)

    def delivered(self, callback: Callback, seqs: Iterable[int]) -> None:
        """An owning `callback` (see `add_done_callback`) has passed on the
        completions `seqs`: acknowledge every seq up to the first one that a
        consumer still holds (a blocking AckCompletions when there is one to
        make; a failure is logged, and the next call tries again)."""
        self._release(callback, seqs, None)

    def _release(self, callback: Callback, seqs: Iterable[int], resets: Optional[int]) -> None:
        """`delivered`, for completions given out when the listener had taken
        `resets` resets (None: the current count): seqs given out before a
        later reset were the old server's, and release nothing (the same
        number now names another completion)."""
        with self._guard:
            if resets is not None and resets != self._resets:
                seqs = ()
            for seq in seqs:
                holders = self._holding.get(seq)
                if holders is not None and callback in holders:
                    holders.remove(callback)
                    if not holders:
                        del self._holding[seq]
                        self._held_results.pop(seq, None)
        self._settle()

    def _settle(self) -> None:
        """Acknowledge every seq given out that no consumer holds any more, up
        to the first one still held (acks are cumulative). The one place the
        manager acknowledges."""
        with self._guard:
            if not self.ack:
                return
            stream = self._stream
            if stream is not None and stream.resets != self._stream_resets:
                # Reset, and no new completion yet: what was given out is the
                # old server's; the new one's seqs are not known.
                return
            upto = self._given_seq
            if self._holding:
                upto = min(upto, min(self._holding) - 1)
            before = self._acked_seq
            if upto <= before:
                return
            client = self._client
            if client is None:
                return  # stopped: what was not acknowledged stays on the server
            self._acked_seq = upto
        try:
            client.ack_completions(upto, session_id=self.session_id)
        except Exception as exc:  # the server's retention bounds what is kept
            if not exiting():  # else its channel closed as the interpreter exits
                log.warning("errand AsyncToolManager: AckCompletions failed: %s", exc)
            with self._guard:
                if self._acked_seq == upto:
                    self._acked_seq = before  # the next _settle tries again

    def add_progress_callback(self, callback: ProgressCallback) -> None:
        """Call `callback(Progress)` for each progress report of the session's
        running tasks (on the listener thread; keep it short)."""
        if not callable(callback):
            raise TypeError(f"a progress callback must be callable, not {type(callback)!r}")
        with self._guard:
            self._progress_callbacks.append(callback)

    def remove_progress_callback(self, callback: ProgressCallback) -> None:
        with self._guard:
            if callback in self._progress_callbacks:
                self._progress_callbacks.remove(callback)

    def on_progress(self, progress: Progress) -> None:
        """Fire the progress callbacks for one report."""
        with self._guard:
            callbacks = list(self._progress_callbacks)
        for callback in callbacks:
            try:
                callback(progress)
            except Exception:
                log.exception("errand AsyncToolManager: progress callback %r raised", callback)

    def on_complete(self, result: AsyncTaskResult) -> None:
        """Fire the callbacks for one finished task (override to handle results
        yourself: the completion is acknowledged once this returns, unless an
        owning callback it called still holds it)."""
        seq = result.completion.seq
        with self._guard:
            callbacks = list(self._callbacks)
            # Every owner holds it from now, before any is called: one
            # removed meanwhile passes its hold on (remove_done_callback).
            owners = [c for c in callbacks if c in self._owners]
            if seq > 0 and owners:
                self._holding.setdefault(seq, []).extend(owners)
                self._held_results[seq] = result
        for callback in callbacks:
            try:
                callback(result)
            except Exception:
                # Not taken over: an owner's hold stays (not acknowledged).
                log.exception("errand AsyncToolManager: on_complete callback %r raised", callback)

    def _listen(self, stream: SessionEventStream) -> None:
        with self._guard:
            self._stream_resets = stream.resets
        try:
            for completion in stream:
                if isinstance(completion, Progress):
                    self.on_progress(completion)
                    continue
                if stream.resets != self._stream_resets:  # the server lost its seqs
                    self._forget_seqs(stream.resets)
                result = AsyncTaskResult.from_completion(completion)
                with self._seen_cond:
                    self._seen[result.task_id] = result
                    while len(self._seen) > self.keep_results:
                        self._seen.popitem(last=False)
                    self._seen_cond.notify_all()
                if by_reference(completion):
                    result = self._read_whole(result)
                self.on_complete(result)
                # The plain callbacks have taken it over; an owner may still hold it.
                with self._guard:
                    self._given_seq = max(self._given_seq, completion.seq)
                self._settle()
        except Exception as exc:
            self._error = exc
            if not exiting():  # else its channel closed as the interpreter exits
                log.error("errand AsyncToolManager: completion stream failed: %s", exc)

    def _forget_seqs(self, stream_resets: int) -> None:
        """The server lost the session's completions (the stream said so, see
        `StreamCursor._reset`): the seqs given out and acknowledged were its
        old ones, which it no longer has; the new ones start again from 1.
        What owners still hold of the old ones is theirs to deliver; its
        delivery releases nothing (`_release`)."""
        with self._guard:
            self._stream_resets = stream_resets
            self._resets += 1
            self._given_seq = self._acked_seq = 0
            self._holding.clear()
            self._held_results.clear()

    # -- lifecycle ---------------------------------------------------------------
    def stop(self, timeout: Optional[float] = 10.0) -> None:
        """Stop serving and following completions; close the client."""
        with self._guard:
            stream, self._stream = self._stream, None
            listener, self._listener = self._listener, None
            client, self._client = self._client, None
        if stream is not None:
            stream.close()
        super().stop(timeout)
        if listener is not None and listener is not threading.current_thread():
            listener.join(timeout)
        if client is not None:
            client.close()

    def shutdown(self, wait: bool = True) -> None:
        """The seed's executor spelling of `stop()`."""
        self.stop(10.0 if wait else 0.0)

    def __enter__(self) -> AsyncToolManager:
        return self.start()

    # -- the decorator's half --------------------------------------------------------
    def wrap_tool(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register `fn` (an `@async_tool` function) and return its agent-side callable.

        Calling the result submits and returns the acknowledgement text;
        `.run(...)` calls `fn` itself; `.submit(...)` returns the whole `Ack`.
        An `async def` function gives an `async def` callable.
        """
        self.add_tool(fn)
        return tool_function(self, tool_def(fn))


def tool_function(manager: AsyncToolManager, spec: ToolDef) -> Callable[..., Any]:
    """The callable `@async_tool(manager)` returns for `spec` (see `wrap_tool`)."""
    fn = spec.fn
    # Real types, not the strings of `from __future__ import annotations`: a
    # framework resolving them against this module's globals would fail.
    hints = {k: v for k, v in _hints(fn).items() if k != "return"}
    plain = inspect.signature(fn)
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation)) for p in plain.parameters.values()
    ]
    sig = plain.replace(parameters=params, return_annotation=str)
    # How Python names the function in a TypeError about its arguments.
    shown = getattr(fn, "__qualname__" if sys.version_info >= (3, 10) else "__name__", spec.name)

    def submit(*args: Any, **kwargs: Any) -> Ack:
        return manager.submit_call(spec.name, call_arguments(sig, args, kwargs, shown))

    if spec.is_async:

        async def acall(*args: Any, **kwargs: Any) -> str:
            return (await asyncio.to_thread(submit, *args, **kwargs)).ack

        call: Callable[..., Any] = acall
    else:

        def scall(*args: Any, **kwargs: Any) -> str:
            return submit(*args, **kwargs).ack

        call = scall
    for attr in ("__module__", "__name__", "__qualname__"):
        setattr(call, attr, getattr(fn, attr, spec.name))
    call.__doc__ = with_notice(spec.description)
    call.__signature__ = sig  # type: ignore[attr-defined]
    call.__annotations__ = {**hints, "return": str}
    call.__errand_tool__ = spec  # type: ignore[attr-defined]
    call.tool_info = ToolInfo(  # type: ignore[attr-defined]
        spec.name,
        with_notice(spec.description),
        spec.input_schema,
        spec.timeout_ms,
        0,
        queue_timeout_ms=spec.queue_timeout_ms,
    )
    call.run = fn  # type: ignore[attr-defined]
    call.submit = submit  # type: ignore[attr-defined]
    call.manager = manager  # type: ignore[attr-defined]
    return call
