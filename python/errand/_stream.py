"""What the blocking and the asyncio reconnecting streams share (not public).

`streams._Stream` and `aio._AsyncStream` differ only in how they wait: one
blocks a thread, the other awaits. Opening the call, the cursor's counters,
what a failed call means and what a retry logs are written once, here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any, Callable, Generic, Optional, TypeVar, Union

import grpc

from errand._connect import exiting
from errand._core import Step, StreamCursor
from errand._retry import broke, pause, transient
from errand.errors import answered_http, from_grpc
from errand.v1 import errand_pb2_grpc as pb_grpc

E = TypeVar("E")
Metadata = Sequence[tuple[str, str]]

log = logging.getLogger("errand.client")


class StreamBase(Generic[E]):
    """A reconnecting stream over one session: its cursor, stub and call.

    `last_seq` is the seq of the last completion yielded.
    """

    #: Set by `close()`/`aclose()`; each transport makes the kind it waits on.
    _closed: Union[threading.Event, asyncio.Event]

    def __init__(
        self,
        stub: Callable[[], pb_grpc.ToolServiceStub],
        cursor: StreamCursor,
        *,
        metadata: Metadata,
        reach: Optional[Callable[[str], Any]] = None,
        target: str = "",
    ) -> None:
        self.session_id = cursor.session_id
        #: The server's address, for the errors raised (see `errors.from_grpc`).
        self._target = target
        self._cursor = cursor
        #: Gives the stub each call is opened on: the client's, which for an
        #: `AsyncClient` is that of its channel on the running loop.
        self._stub = stub
        self._metadata = tuple(metadata)
        self._call: Any = None
        #: Run (blocking) or awaited (asyncio) with the RPC's name before the
        #: first call: the client's fail-fast check for a server never reached
        #: yet, which raises Unavailable("no errand server at ..."). The call
        #: itself waits for the server (wait_for_ready), which is what the
        #: reconnects after a lost server need, but a stream to an address
        #: where nothing ever answered would wait for ever.
        self._reach = reach
        #: What ended the last call, for the WARNING before the next, and its
        #: error (None: the server ended it), for how long to wait (`_delay`).
        self._why = ""
        self._error: Optional[grpc.RpcError] = None

    @property
    def last_seq(self) -> int:
        return self._cursor.last_seq

    @property
    def reconnects(self) -> int:
        return self._cursor.reconnects

    @property
    def resets(self) -> int:
        """How many times the server turned out to have lost the session's
        completions at a reconnect (see `StreamCursor._reset`): seqs start
        again from the server's first, so a reader's seq bookkeeping starts
        again too."""
        return self._cursor.resets

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _start(self) -> Any:
        """A new call of the cursor's RPC, asking for what follows `last_seq`."""
        return getattr(self._stub(), self._cursor.method)(
            self._cursor.request(), metadata=self._metadata, wait_for_ready=True
        )

    def _failed(self, exc: grpc.RpcError, closed: bool) -> Step:
        """What follows a call that failed with `exc`; raises the SDK's error
        (`errand.errors`) where the cursor says `Step.RAISE`. Whether a
        retry can help is `errand._retry.transient`'s to say, as for a
        worker's stream."""
        method = self._cursor.method
        closed = closed or exiting()  # its channel closed at exit: not a break
        retry = transient(exc)
        if not retry and answered_http(exc) is not None and not closed:
            # A web server, not errand: neither a retry nor a fallback helps.
            raise from_grpc(exc, method, self._target) from None
        step = self._cursor.failed(exc.code(), closed, retry)
        if step is Step.RAISE:
            raise from_grpc(exc, method, self._target) from None
        if step is Step.RESET:
            log.warning(
                "errand %s stream of session %s: server %s has lost the session's completions "
                "(a --store memory server restarted, or its store was restored): it refused to "
                "resume after seq %d (%s); following the session afresh from its first "
                "completion (results it lost will not arrive)",
                method,
                self.session_id,
                self._target,
                self._cursor.lost_seq,
                exc.details() or exc.code().name,
            )
        self._why, self._error = broke(exc, self._target), exc
        return step

    def _ended(self, closed: bool) -> Step:
        """What follows a call the server ended (a restart or shutdown)."""
        self._why, self._error = f"server {self._target} ended the stream", None
        return self._cursor.ended(closed or exiting())

    def _delay(self) -> float:
        """Seconds to wait before the call is opened again (the server's
        `retry-after-ms`, else the cursor's backoff: `errand._retry.pause`),
        said at WARNING with what ended the last one."""
        delay = pause(self._error, self._cursor.backoff)
        self._error = None
        log.warning(
            "errand %s stream of session %s: %s; opening it again in %.2fs, after seq %d",
            self._cursor.method,
            self.session_id,
            self._why,
            delay,
            self.last_seq,
        )
        return delay
