"""When a long-lived stream is opened again (not public).

A worker's `Connect` stream and a client's `Completions` and
`SessionEvents` streams decide here, as the Go SDK decides for both
(rpcerr.Transient), whether a failure is worth another attempt, how long
to wait before it (`pause`: the server's `retry-after-ms` when it sent one,
else the stream's backoff), and what happened, for the WARNING each retry
logs.
"""

from __future__ import annotations

from typing import Optional

import grpc

from errand._common import Backoff
from errand.errors import answered_http

#: The longest wait, in seconds, a server's `retry-after-ms` is followed
#: for: a minute, the period of its longest budget (failed authentications
#: per minute); a larger value (a server's mistake, a proxy's) would stall
#: the stream unseen.
MAX_RETRY_AFTER = 60.0

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


def retry_after(err: grpc.RpcError) -> Optional[float]:
    """The wait, in seconds, a RESOURCE_EXHAUSTED `err` asks for in its
    `retry-after-ms` trailer (a rate limit: errand serve's
    --requests-per-second-per-tenant, say), at most `MAX_RETRY_AFTER`; None
    for another code, or without a whole positive number of milliseconds."""
    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    trailers = getattr(err, "trailing_metadata", None)
    for key, value in (trailers() if callable(trailers) else None) or ():
        if key == "retry-after-ms":
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
            if text.isascii() and text.isdigit() and int(text) > 0:
                return min(int(text) / 1000, MAX_RETRY_AFTER)
            return None
    return None


def pause(err: Optional[grpc.RpcError], backoff: Backoff) -> float:
    """Seconds to wait before a stream that ended with `err` (None: the
    server ended it) is opened again: the server's `retry_after` when it
    gave one, else `backoff`'s next delay."""
    asked = retry_after(err) if err is not None else None
    return backoff.next() if asked is None else asked
