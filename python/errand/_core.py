"""The sans-IO core of the agent-side clients (not public).

`Client` (blocking) and `AsyncClient` (asyncio) are thin transports over what
lives here, so the two cannot drift apart:

- `ClientCore`: a client's settings (resolved connection, session, timeout,
  wait_for_ready) and the request of every unary call, as a `Call` that names
  the RPC, carries the request and knows how to decode the answer;
- `StreamCursor`: the state of a reconnecting completion stream (the last
  seq yielded, dedupe of replays, the retry decision and the backoff); an
  `EventCursor` does the same for `SessionEvents`, and can fall back to
  `Completions` on a server without it;
- `ResultPager`: the requests that page through a task's full result;
  `ToolPager` those that page through ListTools to its last page.

Nothing here opens a channel, sleeps or waits: the transports do that.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, Callable, Generic, Optional, TypeVar, Union

import grpc

from errand._common import (
    Backoff,
    Connection,
    SubmitOptions,
    new_session_id,
    submit_request,
)
from errand._connect import from_transport, no_server, went_away
from errand._retry import TRANSIENT
from errand.errors import (
    InvalidArgument,
    NotFound,
    RpcError,
    TaskFailed,
    answered_http,
    from_grpc,
)
from errand.types import (
    Ack,
    Completion,
    PendingDigest,
    ResultChunk,
    SessionEvent,
    Task,
    TaskStatus,
    ToolInfo,
    ack_from_pb,
    chunk_from_pb,
    completion_from_pb,
    digest_from_pb,
    event_from_pb,
    task_from_pb,
    tool_from_pb,
)
from errand.v1 import errand_pb2 as pb

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Call(Generic[T]):
    """One unary call: the RPC's name on `ToolService`, its request, and how
    to turn the answer into what the client method returns."""

    method: str
    request: Any
    decode: Callable[[Any], T]
    #: Seconds this call may take instead of the client's `timeout` (None: that).
    timeout: Optional[float] = None


def _removed(resp: pb.AckCompletionsResponse) -> int:
    return int(resp.removed)


def _page(resp: pb.ListToolsResponse) -> pb.ListToolsResponse:
    return resp


def checked_session_id(session_id: str) -> str:
    """`session_id` when it names a session; InvalidArgument (naming the
    field) when it is empty, which the server would refuse on every call."""
    if not session_id:
        raise InvalidArgument(
            grpc.StatusCode.INVALID_ARGUMENT,
            "session_id is empty: pass a session ID, or leave it out (None) for a fresh random one",
        )
    return session_id


class ClientCore:
    """Settings and request building shared by `Client` and `AsyncClient`."""

    def __init__(
        self,
        conn: Connection,
        *,
        session_id: Optional[str],
        timeout: Optional[float],
        wait_for_ready: bool,
        connect_timeout: float,
    ) -> None:
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be > 0 (seconds)")
        self.conn = conn
        self.connect_timeout = connect_timeout
        #: Set once the channel has connected: from then on calls keep
        #: `wait_for_ready` (a restart is waited out) instead of failing fast.
        self.connected = False
        self.target = conn.target
        self.session_id = new_session_id() if session_id is None else checked_session_id(session_id)
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.metadata = conn.metadata

    def call_options(self, timeout: Optional[float] = None) -> dict[str, Any]:
        """The keyword arguments of a unary stub call; `timeout` (seconds), when
        given, bounds this call instead of the client's `timeout`.

        Until the channel has connected once, a call does not wait for the
        server (`wait_for_ready=False`, at most `connect_timeout` seconds), so
        that a missing server fails it at once; see `failed`.
        """
        limit = self.timeout if timeout is None else timeout
        if self.connected or not self.wait_for_ready:
            return {
                "timeout": limit,
                "metadata": self.metadata,
                "wait_for_ready": self.wait_for_ready,
            }
        first = self.connect_timeout if limit is None else min(self.connect_timeout, limit)
        return {"timeout": first, "metadata": self.metadata, "wait_for_ready": False}

    def answered(self) -> None:
        """The server answered a call (with a result or an error status)."""
        self.connected = True

    def failed(self, err: grpc.RpcError, method: str, timeout: Optional[float] = None) -> RpcError:
        """The error to raise for a failed call: "no errand server at ADDR" when
        the first call found nobody there, "ADDR answered HTTP" when a web
        server answered it (see `errors.from_grpc`), and, once connected, a
        server that went away: "the errand server at ADDR did not answer
        within N s" (DeadlineExceeded: the call's `timeout`, else the
        client's) or "could not be reached" (Unavailable). Only when no
        server answered (`from_transport`): a server's own UNAVAILABLE (a
        draining server's "the server is shutting down: ...") is its answer,
        in its words."""
        code = err.code() if callable(getattr(err, "code", None)) else None
        fail_fast = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        if code in fail_fast and answered_http(err) is None and from_transport(err):
            if not self.connected and self.wait_for_ready:
                detail = err.debug_error_string() if hasattr(err, "debug_error_string") else ""
                return no_server(self.target, self.conn, method, code, detail or "")
            return went_away(err, method, self.target, self.timeout if timeout is None else timeout)
        self.connected = True
        return from_grpc(err, method, self.target)

    def reached(self, state: grpc.ChannelConnectivity, method: str) -> Optional[RpcError]:
        """After waiting for the channel before a first stream (see
        `errand._connect`): None when it is READY (the server is reached: from
        now on calls and streams wait out a restart), else the error to raise
        for `method`: "no errand server at ADDR"."""
        if state is grpc.ChannelConnectivity.READY:
            self.connected = True
            return None
        return no_server(self.target, self.conn, method, state)

    def list_tools(self) -> ToolPager:
        """The pages of one ListTools listing, to follow to the last (see `ToolPager`)."""
        return ToolPager()

    def submit(
        self,
        tool: str,
        arguments: Optional[Mapping[str, Any]],
        extra: Mapping[str, Any],
        *,
        session_id: Optional[str],
        timeout_ms: int,
        idempotency_key: str,
        options: Optional[SubmitOptions] = None,
        queue_timeout_ms: int = 0,
    ) -> Call[Ack]:
        request = submit_request(
            self.session_for(session_id),
            tool,
            arguments,
            extra,
            timeout_ms,
            idempotency_key,
            options,
            queue_timeout_ms,
        )
        return Call("SubmitTool", request, ack_from_pb)

    def session_for(self, session_id: Optional[str]) -> str:
        """The session a call names: this client's for None; InvalidArgument
        for an empty one (never silently another session)."""
        return self.session_id if session_id is None else checked_session_id(session_id)

    def get_task(self, task_id: str) -> Call[Task]:
        return Call("GetTask", pb.GetTaskRequest(task_id=task_id), task_from_pb)

    def cancel(self, task_id: str, reason: str = "") -> Call[Task]:
        if len(reason.encode()) > MAX_REASON_BYTES:
            raise InvalidArgument(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a cancel reason is at most {MAX_REASON_BYTES} bytes; got {len(reason.encode())}",
                "CancelTask",
            )
        request = pb.CancelTaskRequest(task_id=task_id, reason=reason)
        return Call("CancelTask", request, task_from_pb)

    def pending_digest(
        self, session_id: Optional[str], max_bytes: int, timeout: Optional[float] = None
    ) -> Call[PendingDigest]:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0 (0: the server's 4096)")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds or None, not {timeout!r}")
        request = pb.PendingDigestRequest(
            session_id=self.session_for(session_id), max_bytes=max_bytes
        )
        return Call("PendingDigest", request, digest_from_pb, timeout)

    def read_result(self, task_id: str, offset: int, max_bytes: int) -> Call[ResultChunk]:
        if offset < 0 or max_bytes < 0:
            raise ValueError("offset and max_bytes must be >= 0 (max_bytes 0: the server's 65536)")
        request = pb.ReadResultRequest(task_id=task_id, offset=offset, max_bytes=max_bytes)
        return Call("ReadResult", request, chunk_from_pb)

    def ack_completions(self, up_to_seq: int, session_id: Optional[str]) -> Call[int]:
        request = pb.AckCompletionsRequest(
            session_id=self.session_for(session_id), up_to_seq=up_to_seq
        )
        return Call("AckCompletions", request, _removed)

    def cursor(
        self,
        session_id: Optional[str],
        after_seq: int,
        reconnect: bool,
        backoff: Optional[Backoff],
    ) -> StreamCursor:
        return StreamCursor(
            self.session_for(session_id), after_seq, reconnect=reconnect, backoff=backoff
        )

    def event_cursor(
        self,
        session_id: Optional[str],
        after_seq: int,
        reconnect: bool,
        backoff: Optional[Backoff],
        *,
        include_progress: bool,
        results_by_reference: bool,
        fallback: bool,
    ) -> EventCursor:
        return EventCursor(
            self.session_for(session_id),
            after_seq,
            reconnect=reconnect,
            backoff=backoff,
            include_progress=include_progress,
            results_by_reference=results_by_reference,
            fallback=fallback,
        )


#: Most bytes of a cancel reason (the server's limit too).
MAX_REASON_BYTES = 1024


def by_reference(done: Union[Task, Completion]) -> bool:
    """True for a successful completion whose result is not on it (truncated
    to a preview, or sent by reference): read it with ReadResult."""
    return (
        isinstance(done, Completion)
        and done.ok
        and not done.result_json
        and (done.result_truncated or done.result_bytes > 0)
    )


def outcome(done: Union[Task, Completion]) -> Any:
    """The parsed result of a finished task; raises TaskFailed when it did not succeed."""
    if done.status == TaskStatus.SUCCEEDED:
        return done.result
    code, message = (done.error.code, done.error.message) if done.error else ("", "")
    raise TaskFailed(done.task_id, done.status.name, code, message)


def unknown_tool(name: str, known: list[str]) -> NotFound:
    shown = ", ".join(known[:20]) or "none"
    return NotFound(
        grpc.StatusCode.NOT_FOUND,
        f"no worker serves the tool {name!r} (registered: {shown})",
        "ListTools",
    )


class Settings:
    """The settings `Client` and `AsyncClient` share, kept in their `ClientCore`."""

    _core: ClientCore

    @property
    def session_id(self) -> str:
        """The session `submit` and `completions` use when not told otherwise."""
        return self._core.session_id

    @session_id.setter
    def session_id(self, value: str) -> None:
        self._core.session_id = checked_session_id(value)

    @property
    def timeout(self) -> Optional[float]:
        """Seconds each unary call may take (None: no limit)."""
        return self._core.timeout

    @timeout.setter
    def timeout(self, value: Optional[float]) -> None:
        self._core.timeout = value

    @property
    def wait_for_ready(self) -> bool:
        return self._core.wait_for_ready

    @wait_for_ready.setter
    def wait_for_ready(self, value: bool) -> None:
        self._core.wait_for_ready = value


class Step(enum.Enum):
    """What a completion stream does after its call ended or failed."""

    RETRY = "retry"  # wait `StreamCursor.delay()`, then open the stream again
    STOP = "stop"  # end the iteration (closed, or reconnecting is off)
    RAISE = "raise"  # hand the error to the caller
    FALLBACK = "fallback"  # open the older Completions stream instead, at once
    RESET = "reset"  # the server lost the session's seqs: open again from its first, at once


class StreamCursor:
    """Where a reconnecting completion stream is, and what it does next.

    `last_seq` is the seq of the last completion yielded; the stream is
    (re)opened with `request()`, which asks for what comes after it, so a
    reconnect loses and repeats nothing. The transport reports what happened
    (`accept`, `ended`, `failed`) and follows the returned `Step`.
    """

    def __init__(
        self,
        session_id: str,
        after_seq: int,
        *,
        reconnect: bool = True,
        backoff: Optional[Backoff] = None,
    ) -> None:
        self.session_id = session_id
        self.last_seq = after_seq
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.reconnects = 0
        #: How many times a reconnect found the server had lost the session's
        #: completions (`failed`: OUT_OF_RANGE), and the seq asked for then.
        self.resets = 0
        self.lost_seq = 0
        #: The task IDs of the last `RECENT` completions yielded: after a
        #: reset, one replayed from a restored store is not yielded twice.
        self._recent: dict[str, None] = {}

    @property
    def method(self) -> str:
        """The streaming RPC on `ToolService` that `request()` is for."""
        return "Completions"

    def request(self) -> Any:
        """The request that (re)opens the stream after `last_seq`."""
        return pb.CompletionsRequest(session_id=self.session_id, after_seq=self.last_seq)

    def accept(self, msg: Any) -> Optional[Any]:
        """The completion to yield for `msg`, or None for one already yielded
        (a server replaying more than asked)."""
        if msg.seq <= self.last_seq:
            return None
        self.last_seq = msg.seq
        self.backoff.reset()
        if self.resets and msg.task_id in self._recent:
            return None  # yielded before the server lost (and restored) its seqs
        self._recent[msg.task_id] = None
        if len(self._recent) > RECENT:
            del self._recent[next(iter(self._recent))]
        return completion_from_pb(msg)

    def ended(self, closed: bool) -> Step:
        """The server ended a stream that should never end (a restart or shutdown)."""
        return self._again(closed)

    def failed(
        self, code: Optional[grpc.StatusCode], closed: bool, transient: Optional[bool] = None
    ) -> Step:
        """The stream failed with `code`: reconnect after a transient failure.
        `transient` is `errand._retry.transient` of the error (None: judged
        from `code` alone, by its `TRANSIENT`)."""
        if closed:
            return Step.STOP
        if code == grpc.StatusCode.OUT_OF_RANGE and self.reconnects and self.reconnect:
            return self._reset()
        if transient is None:
            transient = code in TRANSIENT
        if not (self.reconnect and transient):
            return Step.RAISE
        return self._again(closed)

    def _reset(self) -> Step:
        """A reconnect asked for what follows `last_seq`, a seq this server
        assigned, and it answered OUT_OF_RANGE: it has lost the session's
        completions (a --store memory server restarted, a store restored
        from a backup). Follow the session afresh, from the first completion
        it still holds (after_seq 0: it skips those acknowledged), rather
        than stop for good; results it lost are lost. A first call's
        OUT_OF_RANGE (an after_seq the caller gave) is still raised."""
        self.lost_seq, self.last_seq = self.last_seq, 0
        self.resets += 1
        return Step.RESET

    def _again(self, closed: bool) -> Step:
        if closed or not self.reconnect:
            return Step.STOP
        self.reconnects += 1
        return Step.RETRY

    def delay(self) -> float:
        """Seconds to wait before the next attempt (grows with each retry)."""
        return self.backoff.next()


#: How many task IDs a cursor remembers to drop replays after a reset.
RECENT = 1024


class EventCursor(StreamCursor):
    """`StreamCursor` for `SessionEvents`: completions keep the seq rules,
    progress events pass through (they take no seq).

    With `fallback`, a server that answers UNIMPLEMENTED (one without
    SessionEvents) is followed with `Completions` instead: completions
    only, no progress.
    """

    def __init__(
        self,
        session_id: str,
        after_seq: int,
        *,
        reconnect: bool = True,
        backoff: Optional[Backoff] = None,
        include_progress: bool = True,
        results_by_reference: bool = False,
        fallback: bool = False,
    ) -> None:
        super().__init__(session_id, after_seq, reconnect=reconnect, backoff=backoff)
        self.include_progress = include_progress
        self.results_by_reference = results_by_reference
        self.fallback = fallback
        #: True once the server turned out not to have SessionEvents.
        self.legacy = False

    @property
    def method(self) -> str:
        return "Completions" if self.legacy else "SessionEvents"

    def request(self) -> Any:
        if self.legacy:
            return super().request()
        return pb.SessionEventsRequest(
            session_id=self.session_id,
            after_seq=self.last_seq,
            include_progress=self.include_progress,
            results_by_reference=self.results_by_reference,
        )

    def accept(self, msg: Any) -> Optional[SessionEvent]:
        if isinstance(msg, pb.Completion):
            return super().accept(msg)
        kind = msg.WhichOneof("event")
        if kind == "completion":
            return super().accept(msg.completion)
        self.backoff.reset()
        return event_from_pb(msg)  # progress (None for a kind this SDK does not know)

    def failed(
        self, code: Optional[grpc.StatusCode], closed: bool, transient: Optional[bool] = None
    ) -> Step:
        if code == grpc.StatusCode.UNIMPLEMENTED and self.fallback and not self.legacy:
            self.legacy = True
            return Step.STOP if closed else Step.FALLBACK
        return super().failed(code, closed, transient)


class ResultPager:
    """Pages through a task's full result with ReadResult (sans-IO).

    Ask `call()` for the next request while `done` is False, hand each chunk
    to `accept`; `text()` is then the whole result. `max_total_bytes`
    bounds what is kept (a larger result raises ValueError).
    """

    def __init__(
        self, core: ClientCore, task_id: str, chunk_bytes: int, max_total_bytes: int
    ) -> None:
        if chunk_bytes < 0 or max_total_bytes <= 0:
            raise ValueError("chunk_bytes >= 0 and max_total_bytes > 0")
        self.core = core
        self.task_id = task_id
        self.chunk_bytes = chunk_bytes
        self.max_total_bytes = max_total_bytes
        self.offset = 0
        self.done = False
        self._parts: list[bytes] = []

    def call(self) -> Call[ResultChunk]:
        return self.core.read_result(self.task_id, self.offset, self.chunk_bytes)

    def accept(self, chunk: ResultChunk) -> None:
        if chunk.total_bytes > self.max_total_bytes:
            raise ValueError(
                f"the result of task {self.task_id} is {chunk.total_bytes} bytes, more than "
                f"max_total_bytes={self.max_total_bytes}; read it in pages with read_result"
            )
        data = chunk.data.encode()
        if chunk.offset != self.offset:
            raise ValueError(
                f"ReadResult answered offset {chunk.offset} for a request at {self.offset}"
            )
        self._parts.append(data)
        self.offset += len(data)
        if chunk.eof or self.offset >= chunk.total_bytes:
            self.done = True
        elif not data:
            raise ValueError(f"ReadResult returned no data at offset {self.offset} before eof")

    def text(self) -> str:
        return b"".join(self._parts).decode()


class ToolPager:
    """Pages through ListTools to the last page (sans-IO).

    A ListTools answer holds no more tools than fit in one message of the
    server's (--max-message-bytes) and then names the next page with an
    opaque `next_page_token`. Ask `call()` for the next request while `done`
    is False and hand each answer to `accept`; `tools` is then every tool,
    sorted by name, as the server pages them.

    Bounded: a listing that would never end raises `RpcError` with code
    INTERNAL (method "ListTools"), from `accept`: a `next_page_token` this
    listing was given before (the server repeats itself), or a page without
    tools that says more follow (it makes no progress).
    """

    def __init__(self) -> None:
        self.token = ""
        self.done = False
        self.tools: list[ToolInfo] = []
        self._given: set[str] = set()

    def call(self) -> Call[pb.ListToolsResponse]:
        return Call("ListTools", pb.ListToolsRequest(page_token=self.token), _page)

    def accept(self, page: pb.ListToolsResponse) -> None:
        self.tools.extend(tool_from_pb(t) for t in page.tools)
        token = page.next_page_token
        if not token:
            self.done = True
            return
        if token in self._given:
            raise self._stuck(f"gave page_token {token!r} again")
        if not page.tools:
            raise self._stuck(f"answered a page without tools before page_token {token!r}")
        self._given.add(token)
        self.token = token

    def _stuck(self, what: str) -> RpcError:
        return RpcError(
            grpc.StatusCode.INTERNAL,
            f"the server {what} after {len(self.tools)} tools: the listing would never end",
            "ListTools",
        )
