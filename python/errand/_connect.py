"""Fail fast when there is no server (not public).

A call made with `wait_for_ready` waits for a connection up to its whole
timeout (30 s by default) and then says only "Deadline Exceeded", and a
stream, which has no timeout, waits for ever. So a client's first call does
not wait for the server (see `ClientCore`), and a worker's `start()` and a
client's first stream wait for their channel here: all give up with a clear
`Unavailable("no errand server at ADDR: is errand serve running?")` as soon
as the connection is refused, or after a few seconds without an answer.
Later calls and streams keep `wait_for_ready`, so a server restart is
ridden out.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Optional

import grpc
import grpc.aio

from errand.errors import Unavailable

#: Default bound, in seconds, on the first connection to a server.
CONNECT_TIMEOUT = 5.0

_DONE = (
    grpc.ChannelConnectivity.READY,
    grpc.ChannelConnectivity.TRANSIENT_FAILURE,
    grpc.ChannelConnectivity.SHUTDOWN,
)


def no_server(target: str, tls: bool, method: str, state: Optional[object]) -> Unavailable:
    """The error for a server that cannot be reached at `target`; `state` is the
    channel state or status code seen (a refusal, or no answer in time)."""
    hint = " (or it refused the TLS handshake: check tls_ca, tls_cert)" if tls else ""
    refused = (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.StatusCode.UNAVAILABLE)
    waited = "" if state in refused else " (no answer in time)"
    return Unavailable(
        grpc.StatusCode.UNAVAILABLE,
        f"no errand server at {target}: is errand serve running?{hint}{waited}",
        method,
    )


def _settled(state: grpc.ChannelConnectivity, first: bool) -> bool:
    """Whether waiting for a channel is over at `state`. A failure the channel
    was already in when the wait began (`first`) is an earlier attempt's: it
    may be retrying, so the wait goes on until READY or the deadline."""
    if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
        return not first
    return state in _DONE


def wait_ready(channel: grpc.Channel, timeout: float) -> grpc.ChannelConnectivity:
    """Connect `channel` and wait, at most `timeout` seconds, until it is READY
    or its attempt failed (TRANSIENT_FAILURE: refused) or it was shut down;
    returns the state it ended in (CONNECTING or IDLE: no answer in time)."""
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
