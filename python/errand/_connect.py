"""Fail fast when there is no server (not public).

A call made with `wait_for_ready` waits for a connection up to its whole
timeout (30 s by default) and then says only "Deadline Exceeded". So a
client's first call does not wait for the server (see `ClientCore`), and a
worker's `start()` waits for its channel here: both give up with a clear
`Unavailable("no errand server at ADDR: is errand serve running?")` as soon
as the connection is refused, or after a few seconds without an answer.
Later calls keep `wait_for_ready`, so a server restart is ridden out.
"""

from __future__ import annotations

import asyncio
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
