"""Fail fast when there is no server (not public).

A call made with `wait_for_ready` waits for a connection up to its whole
timeout (30 s by default) and then says only "Deadline Exceeded", and a
stream, which has no timeout, waits for ever. So a client's first call does
not wait for the server (see `ClientCore`), and a worker's `start()` and a
client's first stream wait for their channel here: all give up with a clear
`Unavailable("no errand server at ADDR: is errand serve running? ...")` (with
what to check about TLS) as soon
as the connection is refused, or after a few seconds without an answer.
Later calls and streams keep `wait_for_ready`, so a server restart is
ridden out; a worker's or a client's stream that fails opens again after
the failures `errand._retry.transient` names.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
import weakref
from typing import Optional

import grpc
import grpc.aio

from errand._common import Connection
from errand.errors import DeadlineExceeded, RpcError, Unavailable, from_grpc

#: Default bound, in seconds, on the first connection to a server.
CONNECT_TIMEOUT = 5.0

_DONE = (
    grpc.ChannelConnectivity.READY,
    grpc.ChannelConnectivity.TRANSIENT_FAILURE,
    grpc.ChannelConnectivity.SHUTDOWN,
)


def tls_advice(conn: Connection, detail: str = "") -> str:
    """What to check about TLS when a server could not be reached with `conn`'s settings:
    a TLS server breaks the connection of a client without its CA, one that requires client
    certificates that of a client without one. `detail`, the transport's own words when
    known, tells an untrusted certificate apart."""
    if conn.credentials is None:
        return (
            "If it serves TLS (errand serve --tls-cert), give the CA that signed its "
            "certificate with tls_ca= or ERRAND_TLS_CA"
        )
    ca = f"tls_ca {conn.tls_ca}" if conn.tls_ca else "the CA (tls_ca=, ERRAND_TLS_CA)"
    if "CERTIFICATE_VERIFY_FAILED" in detail or "certificate verify failed" in detail:
        return (
            f"its TLS certificate is not signed by the CA trusted: {ca} did not sign it; give "
            "the CA that signed errand serve's --tls-cert"
        )
    clients = (
        "if it requires client certificates (errand serve --tls-client-ca), give one with "
        "tls_cert= and tls_key= (ERRAND_TLS_CERT, ERRAND_TLS_KEY)"
        if conn.tls_cert is None
        else f"if it requires client certificates, check that tls_cert {conn.tls_cert} is "
        "signed by the CA of its --tls-client-ca"
    )
    return (
        f"Or its TLS handshake failed: check that {ca} is the CA that signed its certificate, "
        f"and, {clients}"
    )


def no_server(
    target: str, conn: Connection, method: str, state: Optional[object], detail: str = ""
) -> Unavailable:
    """The error for a server that cannot be reached at `target` with `conn`'s settings;
    `state` is the channel state or status code seen (a refusal, or no answer in time),
    `detail` the transport's words when known (see `tls_advice`)."""
    refused = (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.StatusCode.UNAVAILABLE)
    waited = " (no answer in time)" if state not in refused else ""
    return Unavailable(
        grpc.StatusCode.UNAVAILABLE,
        f"no errand server at {target}: is errand serve running? {tls_advice(conn, detail)}"
        f"{waited}",
        method,
    )


#: The words of `went_away`'s errors that end what the model is told (see
#: `errand.integrations._tools.not_made`); the rest is for the developer.
MAY_BE_DOWN = "it may be down or restarting"


#: grpcio's own words for a call the transport failed (a refused or broken
#: connection, a GOAWAY, an unanswered keepalive ping), lower-cased: no
#: server answered it.
_TRANSPORT_WORDS = (
    "failed to connect",
    "connection refused",
    "connection reset",
    "connection aborted",
    "connection timed out",
    "connections to all backends failing",
    "socket closed",
    "stream removed",
    "transport closed",
    "broken pipe",
    "end of tcp stream",
    "goaway",
    "keepalive",
    "ping timeout",
    "too many pings",
    "dns resolution failed",
    "name resolution",
    "no route to host",
    "network is unreachable",
    "endpoint closing",
    "failed to pick subchannel",
    "cancelling all calls",
)


def from_transport(err: grpc.RpcError) -> bool:
    """Whether an UNAVAILABLE or DEADLINE_EXCEEDED `err` was made on this
    side (no server answered: down, restarting, unreachable, or silent past
    the deadline), not sent by a server. A server's status comes with its
    response headers as trailing metadata (errand's: a `date`, at least);
    without them, the words tell: grpcio's transport words, or none, are
    this side's; any other UNAVAILABLE words are a server's own (a draining
    one's "the server is shutting down: ..."), kept as it said them."""
    trailers = getattr(err, "trailing_metadata", None)
    try:
        answered = bool(trailers()) if callable(trailers) else False
    except Exception:  # an aio error before the call ended, say
        answered = False
    if answered:
        return False
    code = err.code() if callable(getattr(err, "code", None)) else None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return True
    details = (err.details() if callable(getattr(err, "details", None)) else "") or ""
    words = details.lower()
    return not words or any(w in words for w in _TRANSPORT_WORDS)


def went_away(err: grpc.RpcError, method: str, target: str, timeout: Optional[float]) -> RpcError:
    """The error for a call to a server that answered this client before but
    not this call: DeadlineExceeded "the errand server at ADDR did not answer
    within N s" (a call that waits for the server, `wait_for_ready`, until its
    `timeout`), or Unavailable "could not be reached" (one that does not
    wait); either says it may be down or restarting. A SubmitTool given up
    on may still have been made: its retry with the same idempotency_key
    starts nothing twice. Other codes: `errors.from_grpc`'s error."""
    code = err.code()
    details = err.details() or ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        within = f" within {timeout:g}s" if timeout is not None else ""
        said = "" if details in ("", "Deadline Exceeded") else f" ({details})"
        made = (
            "; the call may have been made before it stopped answering (a retry with the "
            "same idempotency_key starts nothing twice)"
            if method == "SubmitTool"
            else ""
        )
        return DeadlineExceeded(
            code,
            f"the errand server at {target} did not answer{within}{said}: {MAY_BE_DOWN}{made} "
            "(the client's timeout= sets how long a call waits)",
            method,
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(
            code,
            f"the errand server at {target} could not be reached ({details or code.name}): "
            f"{MAY_BE_DOWN}",
            method,
        )
    return from_grpc(err, method, target)


def _settled(state: grpc.ChannelConnectivity, first: bool) -> bool:
    """Whether waiting for a channel is over at `state`. A failure the channel
    was already in when the wait began (`first`) is an earlier attempt's: it
    may be retrying, so the wait goes on until READY or the deadline."""
    if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
        return not first
    return state in _DONE


#: The blocking channels `wait_ready` has watched; those still open as the
#: interpreter exits are closed then (`_close_watched`).
_watched: weakref.WeakSet[grpc.Channel] = weakref.WeakSet()
_watched_lock = threading.Lock()
#: Set as the interpreter exits (`_close_watched`): a stream whose channel
#: closes then ends quietly, as when closed, rather than warn and reopen.
_exiting = threading.Event()


def exiting() -> bool:
    """True once the interpreter has begun to exit (its atexit handlers run)."""
    return _exiting.is_set()


def _close_watched() -> None:
    """At exit (atexit runs while daemon threads still run), close the
    channels `wait_ready` watched that nobody closed. gRPC's connectivity
    poller, on a daemon thread, goes on watching a channel for a moment
    after its last unsubscribe; a channel still open when the interpreter
    finalizes waits in its finalizer for that watch to end, which it never
    does once daemon threads are frozen: the process would hang at exit
    (a script that failed with Unavailable, say, without closing its client)."""
    _exiting.set()
    with _watched_lock:
        channels = list(_watched)
        _watched.clear()
    for channel in channels:
        try:
            channel.close()
        except Exception:
            pass


atexit.register(_close_watched)


def wait_ready(channel: grpc.Channel, timeout: float) -> grpc.ChannelConnectivity:
    """Connect `channel` and wait, at most `timeout` seconds, until it is READY
    or its attempt failed (TRANSIENT_FAILURE: refused) or it was shut down;
    returns the state it ended in (CONNECTING or IDLE: no answer in time).
    A channel left open is closed at exit (see `_close_watched`)."""
    with _watched_lock:
        _watched.add(channel)
    seen: list[grpc.ChannelConnectivity] = []
    changed = threading.Condition()

    def on_change(state: grpc.ChannelConnectivity) -> None:
        with changed:
            seen.append(state)
            changed.notify_all()

    channel.subscribe(on_change, try_to_connect=True)
    try:
        with changed:
            changed.wait_for(lambda: bool(seen) and _settled(seen[-1], len(seen) == 1), timeout)
            return seen[-1] if seen else grpc.ChannelConnectivity.IDLE
    finally:
        channel.unsubscribe(on_change)


async def wait_ready_async(channel: grpc.aio.Channel, timeout: float) -> grpc.ChannelConnectivity:
    """`wait_ready` for an asyncio channel."""
    deadline = time.monotonic() + timeout
    state = channel.get_state(try_to_connect=True)
    while state not in _DONE:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), left)
        except asyncio.TimeoutError:
            break
        state = channel.get_state(try_to_connect=True)
    return state
