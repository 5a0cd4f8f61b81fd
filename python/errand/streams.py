"""The blocking client's reconnecting streams: `CompletionStream` and `SessionEventStream`.

Both are the same loop over a cursor from `errand._core` (which RPC to open,
from which seq, what to yield, whether to retry); `Client.completions` and
`Client.session_events` make them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Callable, Optional, TypeVar

import grpc

from errand._connect import exiting
from errand._core import Step, StreamCursor
from errand._stream import Metadata, StreamBase
from errand.types import Completion, SessionEvent
from errand.v1 import errand_pb2_grpc as pb_grpc

__all__ = ["CompletionStream", "SessionEventStream"]

E = TypeVar("E")
S = TypeVar("S", bound="_Stream[Any]")


class _Stream(StreamBase[E], Iterator[E]):
    """A reconnecting iterator over one session's stream (see its cursor).

    `last_seq` is the seq of the last completion yielded: persist it to resume
    later with `after_seq=stream.last_seq`.
    """

    _closed: threading.Event

    def __init__(
        self,
        stub: Callable[[], pb_grpc.ToolServiceStub],
        cursor: StreamCursor,
        *,
        metadata: Metadata,
        reach: Optional[Callable[[str], None]] = None,
        target: str = "",
    ) -> None:
        super().__init__(stub, cursor, metadata=metadata, reach=reach, target=target)
        self._lock = threading.Lock()
        self._closed = threading.Event()

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

    def _open(self) -> Any:
        reach = self._reach
        if reach is not None and not self._closed.is_set():
            reach(self._cursor.method)  # no server ever reached there: Unavailable
            self._reach = None
        with self._lock:
            if self._closed.is_set() or exiting():  # at exit its channel is closing
                return None
            if self._call is None:
                self._call = self._start()
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
                step = self._ended(self._closed.is_set())
            except grpc.RpcError as exc:
                self._drop(call)
                step = self._failed(exc, self._closed.is_set())
                if step in (Step.FALLBACK, Step.RESET):
                    continue
            else:
                item: Optional[E] = self._cursor.accept(msg)
                if item is None:
                    continue
                return item
            if step is Step.STOP or self._closed.wait(self._delay()):
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
