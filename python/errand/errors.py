"""Every exception the errand SDK raises, in one place.

    ErrandError
    ├── RpcError                  a call to the server failed; carries .code and .message
    │   ├── InvalidArgument       bad input: the message says what to fix
    │   ├── NotFound              unknown tool or task
    │   ├── AlreadyExists
    │   ├── ResourceExhausted     a limit was hit (argument size, pending tasks, ...)
    │   ├── FailedPrecondition    e.g. cancelling a task that already finished
    │   ├── Unauthenticated
    │   ├── PermissionDenied
    │   ├── Unavailable           the server cannot be reached (retry later)
    │   ├── DeadlineExceeded      the call's own timeout ran out
    │   └── Cancelled
    ├── TaskFailed                `result()` of a task that failed, was cancelled or timed out
    ├── ToolFailure               raise it from a tool to choose the error code
    └── ClosedError               the client or stream was closed

`from_grpc()` is the only place that turns a `grpc.RpcError` into one of these.
"""

from __future__ import annotations

import re
from typing import Optional

import grpc

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "ClosedError",
    "DeadlineExceeded",
    "ErrandError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RpcError",
    "TaskFailed",
    "ToolFailure",
    "Unauthenticated",
    "Unavailable",
    "answered_http",
    "from_grpc",
]


class ErrandError(Exception):
    """Base of every error raised by the errand SDK."""


class RpcError(ErrandError):
    """A call to the errand server failed with a gRPC status.

    Attributes:
        code: the `grpc.StatusCode` the server (or the channel) answered.
        message: the status message; errand's messages say what to fix.
        method: the RPC that failed, e.g. "SubmitTool", when known.
    """

    def __init__(self, code: grpc.StatusCode, message: str, method: str = "") -> None:
        self.code = code
        self.message = message
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{code.name}: {message}")


class InvalidArgument(RpcError):
    """The request was malformed: the message names the field or path to fix."""


class NotFound(RpcError):
    """Unknown tool, task or session (the message names what is known)."""


class AlreadyExists(RpcError):
    """The thing to create exists already."""


class ResourceExhausted(RpcError):
    """A server limit was hit: arguments too large, too many pending tasks, ..."""


class FailedPrecondition(RpcError):
    """The request is valid but not in this state, e.g. cancelling a finished task."""


class Unauthenticated(RpcError):
    """The server requires credentials the client did not present."""


class PermissionDenied(RpcError):
    """The credentials do not allow this call."""


class Unavailable(RpcError):
    """The server could not be reached ("could not be reached", "no errand
    server at ADDR"), or it answered that it cannot take the call now (a
    draining server: "the server is shutting down: ...", in its words); the
    call may be retried."""


class DeadlineExceeded(RpcError):
    """The call's timeout ran out before the server answered."""


class Cancelled(RpcError):
    """The call was cancelled."""


class OutOfRange(RpcError):
    """A position past the end: an ack or an `after_seq` beyond the session's last seq,
    an offset past a result's end."""


class Unimplemented(RpcError):
    """The server does not implement the call (an older server)."""


class TaskFailed(ErrandError):
    """A task waited on with `result()` (or `submit(..., wait=True)`) did not succeed.

    Attributes:
        task_id: the task.
        status: "FAILED", "CANCELLED" or "TIMED_OUT".
        code, message: the task's error code (e.g. "tool_error") and message.
    """

    def __init__(self, task_id: str, status: str, code: str, message: str) -> None:
        self.task_id = task_id
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"task {task_id} {status.lower()}: [{code}] {message}")


class ToolFailure(ErrandError):
    """Raise from a tool to fail the task with a chosen error code.

    Any other exception fails it with code "tool_error" and the exception text.
    """

    def __init__(self, message: str, code: str = "tool_error") -> None:
        self.code = code
        self.message = message
        super().__init__(message)


class ClosedError(ErrandError):
    """The client, worker or stream was closed and cannot be used any more."""


_BY_CODE: dict[grpc.StatusCode, type[RpcError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
}


#: The words of `from_grpc`'s message for a call an HTTP server answered
#: (the address is another port's): the developer's to fix.
ANSWERED_HTTP = "answered HTTP, not errand's gRPC"

#: How grpcio words a call that a web server answered: a status of the client's
#: own making (UNIMPLEMENTED for a 404, UNKNOWN for most other HTTP statuses).
_HTTP_ANSWER = re.compile(r"Received http2 header with status: (\d+)")


#: The codes gRPC maps a proxy's 429, 502, 503 and 504 to (its HTTP-to-status
#: table: UNAVAILABLE; the others for proxies that map their own): an outage
#: of what is behind the proxy, not an address to fix.
_OUTAGE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


def answered_http(err: grpc.RpcError) -> Optional[int]:
    """The HTTP status of a call that an HTTP server answered instead of a gRPC
    one (errand's MCP, A2A or dashboard listener, say), else None."""
    details_fn = getattr(err, "details", None)
    details = details_fn() if callable(details_fn) else None
    match = _HTTP_ANSWER.search(details or "")
    return int(match.group(1)) if match else None


def error_class(code: grpc.StatusCode) -> type[RpcError]:
    """The `RpcError` subclass errand raises for a gRPC status code."""
    return _BY_CODE.get(code, RpcError)


def from_grpc(err: grpc.RpcError, method: str = "", target: str = "") -> RpcError:
    """Turn a `grpc.RpcError` (sync or aio) into the matching `RpcError` subclass.

    `target` is the address the call went to (the `target=` given, or
    $ERRAND_SERVER): an HTTP answer there, not errand's gRPC, says so (the class
    stays the one of the code grpcio chose, e.g. `Unimplemented` for a 404).
    A proxy's 429/502/503/504 (UNAVAILABLE) is an outage instead: "a proxy
    at ADDR answered HTTP 503 (errand may be restarting)".
    """
    code: Optional[grpc.StatusCode] = None
    message = ""
    code_fn = getattr(err, "code", None)
    if callable(code_fn):
        code = code_fn()
    details_fn = getattr(err, "details", None)
    if callable(details_fn):
        message = details_fn() or ""
    if code is None:
        code = grpc.StatusCode.UNKNOWN
        message = message or str(err)
    http_status = answered_http(err)
    if http_status is not None and code in _OUTAGE:
        # A proxy in front of errand (nginx grpc_pass, an ingress) answering
        # 429/502/503/504 for it: errand restarting or not serving. An outage
        # (see `integrations._tools.for_developer`), not the wrong port.
        message = (
            f"a proxy at {target or 'the server'} answered HTTP {http_status} "
            "(errand may be restarting)"
        )
    elif http_status is not None:
        message = (
            f"{target or 'the server'} {ANSWERED_HTTP} (HTTP status "
            f"{http_status}): is this the MCP, A2A or dashboard port? Give target=/ERRAND_SERVER "
            "the address of errand serve --listen (port 7466 by default)"
        )
    cls = _BY_CODE.get(code, RpcError)
    return cls(code, message, method)
