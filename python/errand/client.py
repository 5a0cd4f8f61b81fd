"""The blocking client: submit tool calls, follow a session's completions.

    from errand import Client

    with Client("127.0.0.1:7466") as client:
        ack = client.submit("research_topic", topic="tides")
        print(ack.ack)                        # text for the model, at once
        for completion in client.completions():
            print(completion.task_id, completion.result)
            break

Every method raises a subclass of `errand.errors.RpcError` when the server
answers with an error; see `errand.errors`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Callable, Literal, Optional, TypeVar, Union, overload

import grpc

from errand._common import Backoff, Connection, PathLike, SubmitOptions, connection
from errand._connect import CONNECT_TIMEOUT, wait_ready
from errand._core import (
    Call,
    ClientCore,
    ResultPager,
    Settings,
    by_reference,
    outcome,
    unknown_tool,
)
from errand.callables import remote_tool
from errand.errors import ClosedError, DeadlineExceeded
from errand.streams import CompletionStream, SessionEventStream
from errand.types import (
    Ack,
    Completion,
    DedupPolicy,
    DeliveryPolicy,
    PendingDigest,
    ResultChunk,
    Task,
    ToolInfo,
)
from errand.v1 import errand_pb2_grpc as pb_grpc

__all__ = ["Client", "CompletionStream", "SessionEventStream"]

T = TypeVar("T")
Metadata = Sequence[tuple[str, str]]


class Client(Settings):
    """A blocking connection to an errand server, for agents.

    Args:
        target: "host:port" of the server; defaults to $ERRAND_SERVER, then
            127.0.0.1:7466.
        session_id: the session that `submit` and `completions` use when not
            told otherwise; a fresh random one by default. An empty one
            raises InvalidArgument.
        timeout: seconds each unary call may take (None: no limit).
        wait_for_ready: let calls wait (up to `timeout`) for the server to be
            reachable, e.g. while it restarts, instead of failing at once
            with Unavailable. The first call still fails fast: see
            `connect_timeout`.
        metadata: extra gRPC metadata sent with every call.
        channel: an existing channel to use instead of opening one (it is
            not closed by `close()`; the TLS arguments are then unused).
        token: bearer token (from `errand token new`), sent as
            `authorization: Bearer <token>` on every call and stream;
            defaults to $ERRAND_TOKEN ("" sends none).
        tls_ca: connect with TLS, trusting this CA certificate (a PEM file);
            defaults to $ERRAND_TLS_CA. A target starting with https:// uses
            TLS with the system's roots.
        tls_cert, tls_key: the client certificate and its key (PEM files),
            for servers that require mutual TLS; default $ERRAND_TLS_CERT and
            $ERRAND_TLS_KEY. Either one implies TLS.
        tls_domain: the name the server's certificate must carry, instead of
            the target's host; default $ERRAND_TLS_DOMAIN.
        connect_timeout: seconds the first call waits for a connection; a
            refused one fails at once. Either way it raises
            `Unavailable("no errand server at ADDR: is errand serve running?")`.
    """

    def __init__(
        self,
        target: Optional[str] = None,
        *,
        session_id: Optional[str] = None,
        timeout: Optional[float] = 30.0,
        wait_for_ready: bool = True,
        metadata: Optional[Metadata] = None,
        channel: Optional[grpc.Channel] = None,
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
        self._own_channel = channel is None
        self._channel = channel or self._core.conn.channel()
        self._stub = pb_grpc.ToolServiceStub(self._channel)
        self._closed = False

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        """Close the channel; open completion streams end."""
        if self._closed:
            return
        self._closed = True
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------
    def _stub_now(self) -> pb_grpc.ToolServiceStub:
        """The stub a stream opens its calls on."""
        return self._stub

    def _run(self, call: Call[T]) -> T:
        if self._closed:
            raise ClosedError("the client is closed")
        try:
            answer = getattr(self._stub, call.method)(
                call.request, **self._core.call_options(call.timeout)
            )
        except grpc.RpcError as exc:
            raise self._core.failed(exc, call.method, call.timeout) from None
        self._core.answered()
        return call.decode(answer)

    def _reach(self, method: str) -> None:
        """Before a stream's first call: unless a server has answered this
        client already, wait (at most `connect_timeout`) for the channel to
        connect, and raise Unavailable("no errand server at ADDR") if it does not."""
        if self._core.connected:
            return
        if self._closed:
            raise ClosedError("the client is closed")
        error = self._core.reached(wait_ready(self._channel, self._core.connect_timeout), method)
        if error is not None:
            raise error

    def list_tools(self) -> list[ToolInfo]:
        """Every tool workers have registered (and known ones no worker serves
        now, with `workers == 0`), sorted by name.

        The server answers in pages (as many tools as fit in one message of
        its --max-message-bytes); this follows every page's
        `next_page_token` to the last, one ListTools call per page.

        Raises:
            RpcError: code INTERNAL when the server's pages would never end
                (it gives a page token again, or a page without tools that
                says more follow); any error of a ListTools call.
        """
        pager = self._core.list_tools()
        while not pager.done:
            pager.accept(self._run(pager.call()))
        return pager.tools

    @overload
    def submit(
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
    def submit(
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

    def submit(
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
        """Queue one call of `tool` and return at once with its task id and ack text.

        Arguments come as a mapping, as keywords, or both:
        `submit("search", query="x")` or `submit("search", {"query": "x"})`
        (use the mapping for an argument named like one of the options).

        A submit cut off by a broken connection is retried; the idempotency
        key (random unless given) makes sure the tool still runs once.

        `wait=True` is the one-line blocking case: it waits for the task and
        returns its result, as `result(ack.task_id)` does.

        Timeouts, in milliseconds, 0 (the default) for the tool's, then the
        server's: `timeout_ms` bounds one run, from dispatch to a worker
        (--default-timeout-ms); `queue_timeout_ms` bounds the wait for a
        worker, from the submit: a call no worker has taken by then ends
        TIMED_OUT with error code "queue_timeout"
        (--default-queue-timeout-ms, 5 minutes unless configured).

        The call's own options override the tool's (unset: the tool's, then
        the server's defaults): `delivery` ("when_idle", "interrupt",
        "silent" or a `DeliveryPolicy`), `dedup` ("off", "join_in_flight":
        an identical call in flight is joined, `Ack.joined`),
        `result_budget_bytes` (most bytes of the result delivered inline),
        and one fallback for a failure or timeout: `fallback_tool` (run that
        tool) or `fallback_last_good_max_age_ms` (answer with the session's
        last good result of the same call, if at most that old).

        Raises:
            InvalidArgument: arguments not JSON or failing the tool's schema;
                a negative timeout, an unknown policy, a budget above the
                server's maximum, both fallbacks, or a fallback to the tool itself.
            NotFound: no worker has registered `tool`.
            ResourceExhausted: arguments too large or too many pending tasks.
            Unavailable: no server at the target.
            TaskFailed: with `wait=True`, the task did not succeed.
        """
        ack = self._run(
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
        return self.result(ack.task_id) if wait else ack

    def result(self, task_id: str, *, timeout: Optional[float] = None) -> Any:
        """Wait for a task to finish and return its result (the parsed JSON).

        Follows the task's session until its completion arrives (a finished
        task answers at once). `timeout` is in seconds; None waits as long
        as the task lives (the server times tasks out).

        Raises:
            TaskFailed: the task failed, was cancelled or timed out.
            DeadlineExceeded: not finished within `timeout`.
            NotFound: unknown task, or no longer retained.
            ValueError: a negative `timeout`.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, not {timeout!r}")
        task = self.get_task(task_id)
        if task.status.finished:
            return outcome(task)
        stream = self.completions(task.session_id)
        timer = threading.Timer(timeout, stream.close) if timeout is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            for done in stream:
                if done.task_id == task_id:
                    if by_reference(done):
                        return json.loads(self.read_full_result(task_id))
                    return outcome(done)
        finally:
            stream.close()
            if timer is not None:
                timer.cancel()
        task = self.get_task(task_id)  # finished as the stream closed?
        if task.status.finished:
            return outcome(task)
        raise DeadlineExceeded(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"task {task_id} did not finish within {timeout}s",
            "result",
        )

    def tool(self, name: str) -> Callable[..., str]:
        """A registered tool as a plain function that submits and returns the ack text.

        Hand it to an agent framework as a tool: it has the tool's name, a
        signature and docstring from its schema and description (see
        `errand.callables`). Raises NotFound when no worker serves `name`.
        """
        tools = self.list_tools()
        for info in tools:
            if info.name == name:
                return remote_tool(self, info)
        raise unknown_tool(name, [t.name for t in tools])

    def tools(self) -> list[Callable[..., str]]:
        """Every registered tool as a function (see `tool`), sorted by name."""
        return [remote_tool(self, info) for info in self.list_tools()]

    def get_task(self, task_id: str) -> Task:
        """One task's state. Raises NotFound when unknown or no longer retained."""
        return self._run(self._core.get_task(task_id))

    def cancel(self, task_id: str, *, reason: str = "") -> Task:
        """Cancel a queued or running task; `reason` (at most 1 KiB) reaches the
        worker and the completion's message. A task already cancelled is
        returned unchanged; FailedPrecondition if it finished otherwise
        (succeeded, failed, timed out); InvalidArgument for a longer reason."""
        return self._run(self._core.cancel(task_id, reason))

    def pending_digest(
        self,
        session_id: Optional[str] = None,
        *,
        max_bytes: int = 0,
        timeout: Optional[float] = None,
    ) -> PendingDigest:
        """What the session waits for: its unfinished tasks (with their latest
        progress), how many completions are unacknowledged, and `text` for the
        model ("" when there is nothing to say), at most `max_bytes` (0: 4096).
        `timeout`: seconds this call may wait (None: the client's `timeout`);
        AsyncAgent asks with a short one, so that a server down cannot hold a
        turn. ValueError for a timeout <= 0."""
        return self._run(self._core.pending_digest(session_id, max_bytes, timeout))

    def read_result(self, task_id: str, *, offset: int = 0, max_bytes: int = 0) -> ResultChunk:
        """One page of a task's full result_json: bytes from `offset`, at most
        `max_bytes` (0: 65536), for results delivered truncated or by reference.

        Raises NotFound (unknown task), FailedPrecondition (no result: not
        finished or not succeeded), OutOfRange (offset past the end).
        """
        return self._run(self._core.read_result(task_id, offset, max_bytes))

    def completion_result(self, completion: Completion) -> Any:
        """The parsed result of a completion, read whole (ReadResult) when it
        arrived over its budget (`result_truncated`: `completion.result` is
        then None). Raises TaskFailed when the task did not succeed."""
        if by_reference(completion):
            return json.loads(self.read_full_result(completion.task_id))
        return outcome(completion)

    def read_full_result(
        self, task_id: str, *, chunk_bytes: int = 0, max_total_bytes: int = 64 << 20
    ) -> str:
        """A task's whole result_json, paged through `read_result`; raises
        ValueError for a result over `max_total_bytes`."""
        pager = ResultPager(self._core, task_id, chunk_bytes, max_total_bytes)
        while not pager.done:
            pager.accept(self._run(pager.call()))
        return pager.text()

    def ack_completions(self, up_to_seq: int, *, session_id: Optional[str] = None) -> int:
        """Let the server drop the session's completions up to `up_to_seq`; returns how many."""
        return self._run(self._core.ack_completions(up_to_seq, session_id))

    def completions(
        self,
        session_id: Optional[str] = None,
        *,
        after_seq: int = 0,
        reconnect: bool = True,
        backoff: Optional[Backoff] = None,
    ) -> CompletionStream:
        """Iterate over a session's completions, replayed after `after_seq`, then live.

        The iterator never ends by itself: when the connection breaks, or the
        server says to try later (RESOURCE_EXHAUSTED: its limit of open
        streams, say), it opens the stream again with the last seq it
        yielded, waiting `backoff` between tries (or as long as a rate
        limit's `retry-after-ms` asks, at most a minute), so nothing is
        missed or repeated; each retry is logged at WARNING (logger
        `errand.client`: the code, the server's words, the wait). Errors a
        retry cannot fix (PERMISSION_DENIED, OUT_OF_RANGE, ...) end it with
        the SDK's error (`errand.errors`). Call `close()` on it (from any
        thread) or leave the `with` block to stop. Its first connect fails
        fast as the first call does: with no server ever reached at the
        target, the first `next()` raises Unavailable("no errand server at
        ADDR") (at once when refused, else after `connect_timeout`).

        `after_seq` must be a seq this session assigned (at most its last
        seq; 0 for everything retained): beyond it the stream raises
        OutOfRange naming both, instead of waiting for completions it would
        then skip. A seq the iterator yielded is always within, unless a
        memory-store server restarted and numbers the session from 1 again.
        """
        if self._closed:
            raise ClosedError("the client is closed")
        cursor = self._core.cursor(session_id, after_seq, reconnect, backoff)
        return CompletionStream(
            self._stub_now,
            cursor,
            metadata=self._core.metadata,
            reach=self._reach,
            target=self._core.target,
        )

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
    ) -> SessionEventStream:
        """Iterate over a session's events: its completions, as `completions`
        does (replayed after `after_seq`, then live, reconnecting; OutOfRange
        when `after_seq` is beyond the session's last seq), and with
        `include_progress` the `Progress` of its running tasks (at most one per
        task per server interval; not durable).

        `results_by_reference` leaves `result_json` off every completion
        (`result_bytes` says how large it is; `read_full_result` fetches it).
        `fallback=True` follows `Completions` instead when the server has no
        SessionEvents (completions only). Raises Unimplemented otherwise.
        """
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
        return SessionEventStream(
            self._stub_now,
            cursor,
            metadata=self._core.metadata,
            reach=self._reach,
            target=self._core.target,
        )
