"""The blocking client's reconnecting streams: `CompletionStream` and `SessionEventStream`.

Both are the same loop over a cursor from `errand._core` (which RPC to open,
from which seq, what to yield, whether to retry); `Client.completions` and
`Client.session_events` make them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, Optional, TypeVar

import grpc

from errand._core import Step, StreamCursor
from errand.errors import from_grpc
from errand.types import Completion, SessionEvent
from errand.v1 import errand_pb2_grpc as pb_grpc

__all__ = ["CompletionStream", "SessionEventStream"]

E = TypeVar("E")
S = TypeVar("S", bound="_Stream[Any]")
Metadata = Sequence[tuple[str, str]]


class _Stream(Iterator[E]):
    """A reconnecting iterator over one session's stream (see its cursor).

    `last_seq` is the seq of the last completion yielded: persist it to resume
    later with `after_seq=stream.last_seq`.
    """

    def __init__(
        self, stub: pb_grpc.ToolServiceStub, cursor: StreamCursor, *, metadata: Metadata
    ) -> None:
        self.session_id = cursor.session_id
        self._cursor = cursor
        self._stub = stub
        self._metadata = tuple(metadata)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._call: Any = None

    @property
    def last_seq(self) -> int:
        return self._cursor.last_seq

    @property
    def reconnects(self) -> int:
        return self._cursor.reconnects

    def __iter__(self: S) -> S:
        return self

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the stream; a blocked `next()` in another thread ends with StopIteration."""
        self._closed.set()
        with self._lock:
            call, self._call = self._call, None
        if call is not None:
            call.cancel()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _open(self) -> Any:
        with self._lock:
            if self._closed.is_set():
                return None
            if self._call is None:
                self._call = getattr(self._stub, self._cursor.method)(
                    self._cursor.request(), metadata=self._metadata, wait_for_ready=True
                )
            return self._call

    def _drop(self, call: Any) -> None:
        with self._lock:
            if self._call is call:
                self._call = None
        call.cancel()

    def __next__(self) -> E:
        while True:
            call = self._open()
            if call is None:
                raise StopIteration
            try:
                msg = next(call)
            except StopIteration:
                self._drop(call)
                step = self._cursor.ended(self._closed.is_set())
            except grpc.RpcError as exc:
                self._drop(call)
                method = self._cursor.method
                step = self._cursor.failed(exc.code(), self._closed.is_set())
                if step is Step.RAISE:
                    raise from_grpc(exc, method) from None
                if step is Step.FALLBACK:
                    continue
            else:
                item: Optional[E] = self._cursor.accept(msg)
                if item is None:
                    continue
                return item
            if step is Step.STOP or self._closed.wait(self._cursor.delay()):
                raise StopIteration


class CompletionStream(_Stream[Completion]):
    """A reconnecting iterator over one session's completions.

    `last_seq` is the seq of the last completion yielded: persist it to resume
    later with `client.completions(after_seq=stream.last_seq)`.
    """


class SessionEventStream(_Stream[SessionEvent]):
    """A reconnecting iterator over one session's events: `Completion`s and
    `Progress` reports (see `Client.session_events`).

    `last_seq` is the seq of the last completion yielded; `legacy` is True
    when the server had no SessionEvents and `fallback=True` made it follow
    Completions instead.
    """

    @property
    def legacy(self) -> bool:
        return bool(getattr(self._cursor, "legacy", False))
