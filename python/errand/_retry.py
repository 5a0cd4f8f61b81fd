"""When a long-lived stream is opened again (not public).

A worker's `Connect` stream and a client's `Completions` and
`SessionEvents` streams decide here, as the Go SDK decides for both
(rpcerr.Transient), whether a failure is worth another attempt, and say
what happened for the WARNING each retry logs.
"""

from __future__ import annotations

import grpc

from errand.errors import answered_http

#: The codes after which a stream is opened again: the server went away or
#: restarted, the connection broke, or the server said to try later
#: (RESOURCE_EXHAUSTED: its limit of connected workers or of open streams, a
#: rate limit). And CANCELLED, as before, when the SDK did not cancel the
#: call itself: the Go SDK ends with its context instead.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)


def transient(err: grpc.RpcError) -> bool:
    """Whether a stream is worth opening again after `err`: one of
    `TRANSIENT`, unless an HTTP server answered (another port: retrying
    cannot fix the address), as the Go SDK decides. (The Go SDK also gives
    up on a message over its own receive limit; this one's limit is the
    largest message a server sends.)"""
    code = err.code()
    if code not in TRANSIENT:
        return False
    return code == grpc.StatusCode.UNAVAILABLE or answered_http(err) is None


def broke(err: grpc.RpcError, target: str) -> str:
    """What happened to the stream, for the log: the code and the server's words."""
    code = err.code()
    details = err.details() or ""
    said = f"{code.name}: {details}" if details else code.name
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return f"server {target} refused the stream for now ({said})"
    return f"the stream to {target} broke ({said})"
