"""The sans-IO core of the agent-side clients (not public).

`Client` (blocking) and `AsyncClient` (asyncio) are thin transports over what
lives here, so the two cannot drift apart:

- `ClientCore`: a client's settings (resolved connection, session, timeout,
  wait_for_ready) and the request of every unary call, as a `Call` that names
  the RPC, carries the request and knows how to decode the answer;
- `StreamCursor`: the state of a reconnecting completion stream (the last
  seq yielded, dedupe of replays, the retry decision and the backoff).

Nothing here opens a channel, sleeps or waits: the transports do that.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, Callable, Generic, Optional, TypeVar, Union

import grpc

from errand._common import RETRYABLE, Backoff, Connection, new_session_id, submit_request
from errand._connect import no_server
from errand.errors import NotFound, RpcError, TaskFailed, from_grpc
from errand.types import (
    Ack,
    Completion,
    Task,
    TaskStatus,
    ToolInfo,
    ack_from_pb,
    completion_from_pb,
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


def _removed(resp: pb.AckCompletionsResponse) -> int:
    return int(resp.removed)


def _tools(resp: pb.ListToolsResponse) -> list[ToolInfo]:
    return [tool_from_pb(t) for t in resp.tools]


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
        self.session_id = session_id or new_session_id()
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.metadata = conn.metadata

    def call_options(self) -> dict[str, Any]:
        """The keyword arguments of a unary stub call.

        Until the channel has connected once, a call does not wait for the
        server (`wait_for_ready=False`, at most `connect_timeout` seconds), so
        that a missing server fails it at once; see `failed`.
        """
        if self.connected or not self.wait_for_ready:
            return {
                "timeout": self.timeout,
                "metadata": self.metadata,
                "wait_for_ready": self.wait_for_ready,
            }
        timeout = self.connect_timeout
        if self.timeout is not None:
            timeout = min(timeout, self.timeout)
        return {"timeout": timeout, "metadata": self.metadata, "wait_for_ready": False}

    def answered(self) -> None:
        """The server answered a call (with a result or an error status)."""
        self.connected = True

    def failed(self, err: grpc.RpcError, method: str) -> RpcError:
        """The error to raise for a failed call: "no errand server at ADDR" when
        the first call found nobody there."""
        code = err.code() if callable(getattr(err, "code", None)) else None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            if not self.connected and self.wait_for_ready:
                return no_server(self.target, self.conn.tls, method, code)
        else:
            self.connected = True
        return from_grpc(err, method)

    def list_tools(self) -> Call[list[ToolInfo]]:
        return Call("ListTools", pb.ListToolsRequest(), _tools)

    def submit(
        self,
        tool: str,
        arguments: Optional[Mapping[str, Any]],
        extra: Mapping[str, Any],
        *,
        session_id: Optional[str],
        timeout_ms: int,
        idempotency_key: str,
    ) -> Call[Ack]:
        request = submit_request(
            session_id or self.session_id, tool, arguments, extra, timeout_ms, idempotency_key
        )
        return Call("SubmitTool", request, ack_from_pb)

    def get_task(self, task_id: str) -> Call[Task]:
        return Call("GetTask", pb.GetTaskRequest(task_id=task_id), task_from_pb)

    def cancel(self, task_id: str) -> Call[Task]:
        return Call("CancelTask", pb.CancelTaskRequest(task_id=task_id), task_from_pb)

    def ack_completions(self, up_to_seq: int, session_id: Optional[str]) -> Call[int]:
        request = pb.AckCompletionsRequest(
            session_id=session_id or self.session_id, up_to_seq=up_to_seq
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
            session_id or self.session_id, after_seq, reconnect=reconnect, backoff=backoff
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
        self._core.session_id = value

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

    def request(self) -> pb.CompletionsRequest:
        """The request that (re)opens the stream after `last_seq`."""
        return pb.CompletionsRequest(session_id=self.session_id, after_seq=self.last_seq)

    def accept(self, msg: pb.Completion) -> Optional[Completion]:
        """The completion to yield for `msg`, or None for one already yielded
        (a server replaying more than asked)."""
        if msg.seq <= self.last_seq:
            return None
        self.last_seq = msg.seq
        self.backoff.reset()
        return completion_from_pb(msg)

    def ended(self, closed: bool) -> Step:
        """The server ended a stream that should never end (a restart or shutdown)."""
        return self._again(closed)

    def failed(self, code: Optional[grpc.StatusCode], closed: bool) -> Step:
        """The stream failed with `code`: reconnect after the retryable ones."""
        if closed:
            return Step.STOP
        if not (self.reconnect and code in RETRYABLE):
            return Step.RAISE
        return self._again(closed)

    def _again(self, closed: bool) -> Step:
        if closed or not self.reconnect:
            return Step.STOP
        self.reconnects += 1
        return Step.RETRY

    def delay(self) -> float:
        """Seconds to wait before the next attempt (grows with each retry)."""
        return self.backoff.next()
