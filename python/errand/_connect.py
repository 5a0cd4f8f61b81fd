"""Fail fast when there is no server (not public).

A call made with `wait_for_ready` waits for a connection up to its whole
timeout (30 s by default) and then says only "Deadline Exceeded". Before the
first call of a client or worker, these helpers wait for the channel to
connect instead, and give up with a clear `Unavailable` as soon as the
connection is refused (TRANSIENT_FAILURE) or after `connect_timeout` seconds.
Later calls keep `wait_for_ready`, so a server restart is ridden out.
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
    """The error for a server that cannot be reached at `target`."""
    hint = " (or it refused the TLS handshake: check tls_ca, tls_cert)" if tls else ""
    waited = "" if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE else " (no answer in time)"
    return Unavailable(
        grpc.StatusCode.UNAVAILABLE,
        f"no errand server at {target}: is errand serve running?{hint}{waited}",
        method,
    )


def wait_ready(channel: grpc.Channel, timeout: float) -> grpc.ChannelConnectivity:
    """Connect `channel`; returns READY, TRANSIENT_FAILURE or the last state at `timeout`."""
    lock = threading.Lock()
    done = threading.Event()
    last = [grpc.ChannelConnectivity.IDLE]

    def seen(state: grpc.ChannelConnectivity) -> None:
        with lock:
            last[0] = state
        if state in _DONE:
            done.set()

    channel.subscribe(seen, try_to_connect=True)
    try:
        done.wait(timeout)
    finally:
        channel.unsubscribe(seen)
    with lock:
        return last[0]


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
