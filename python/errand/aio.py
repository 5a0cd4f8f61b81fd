"""The asyncio client: the same calls as `errand.Client`, awaitable.

from errand import AsyncClient

async with AsyncClient("127.0.0.1:7466") as client:
    ack = await client.submit("research_topic", topic="tides")
    async for completion in client.completions():
        print(completion.task_id, completion.result)
        break
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar

import grpc
import grpc.aio

from errand._common import (
    RETRYABLE,
    Backoff,
    PathLike,
    connection,
    new_session_id,
    submit_request,
)
from errand.errors import ClosedError, from_grpc
from errand.types import (
    Ack,
    Completion,
    Task,
    ToolInfo,
    ack_from_pb,
    completion_from_pb,
    task_from_pb,
    tool_from_pb,
)
from errand.v1 import errand_pb2 as pb
from errand.v1 import errand_pb2_grpc as pb_grpc

_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # not in grpc-stubs

__all__ = ["AsyncClient", "AsyncCompletionStream"]

T = TypeVar("T")
Metadata = Sequence[tuple[str, str]]


class AsyncClient:
    """An asyncio connection to an errand server, for agents.

    Takes the same arguments as `errand.Client` (the token and TLS ones too);
    create it inside the event loop that will use it.
    """

    def __init__(
        self,
        target: Optional[str] = None,
        *,
        session_id: Optional[str] = None,
        timeout: Optional[float] = 30.0,
        wait_for_ready: bool = True,
        metadata: Optional[Metadata] = None,
        channel: Optional[grpc.aio.Channel] = None,
        token: Optional[str] = None,
        tls_ca: Optional[PathLike] = None,
        tls_cert: Optional[PathLike] = None,
        tls_key: Optional[PathLike] = None,
        tls_domain: Optional[str] = None,
    ) -> None:
        self._conn = connection(
            target,
            token=token,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_domain=tls_domain,
            metadata=metadata,
        )
        self.target = self._conn.target
        self.session_id = session_id or new_session_id()
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self._metadata = self._conn.metadata
        self._own_channel = channel is None
        self._channel = channel or self._conn.aio_channel()
        self._stub = pb_grpc.ToolServiceStub(self._channel)
        self._closed = False

    async def close(self) -> None:
        """Close the channel; open completion streams end."""
        if self._closed:
            return
        self._closed = True
        if self._own_channel:
            await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    async def _call(self, method: str, fn: Callable[..., Awaitable[T]], request: Any) -> T:
        if self._closed:
            raise ClosedError("the client is closed")
        try:
            return await fn(
                request,
                timeout=self.timeout,
                metadata=self._metadata,
                wait_for_ready=self.wait_for_ready,
            )
        except grpc.RpcError as exc:
            raise from_grpc(exc, method) from None

    async def list_tools(self) -> list[ToolInfo]:
        """The tools workers have registered, sorted by name."""
        resp = await self._call("ListTools", self._stub.ListTools, pb.ListToolsRequest())
        return [tool_from_pb(t) for t in resp.tools]

    async def submit(
        self,
        tool: str,
        arguments: Optional[Mapping[str, Any]] = None,
        /,
        *,
        session_id: Optional[str] = None,
        timeout_ms: int = 0,
        idempotency_key: str = "",
        **kwargs: Any,
    ) -> Ack:
        """Queue one call of `tool`; see `errand.Client.submit`."""
        request = submit_request(
            session_id or self.session_id, tool, arguments, kwargs, timeout_ms, idempotency_key
        )
        return ack_from_pb(await self._call("SubmitTool", self._stub.SubmitTool, request))

    async def get_task(self, task_id: str) -> Task:
        """One task's state. Raises NotFound when unknown or no longer retained."""
        request = pb.GetTaskRequest(task_id=task_id)
        return task_from_pb(await self._call("GetTask", self._stub.GetTask, request))

    async def cancel(self, task_id: str) -> Task:
        """Cancel a queued or running task. Raises FailedPrecondition if it finished."""
        request = pb.CancelTaskRequest(task_id=task_id)
        return task_from_pb(await self._call("CancelTask", self._stub.CancelTask, request))

    async def ack_completions(self, up_to_seq: int, *, session_id: Optional[str] = None) -> int:
        """Let the server drop the session's completions up to `up_to_seq`; returns how many."""
        request = pb.AckCompletionsRequest(
            session_id=session_id or self.session_id, up_to_seq=up_to_seq
        )
        resp = await self._call("AckCompletions", self._stub.AckCompletions, request)
        removed: int = resp.removed
        return removed

    def completions(
        self,
        session_id: Optional[str] = None,
        *,
        after_seq: int = 0,
        reconnect: bool = True,
        backoff: Optional[Backoff] = None,
    ) -> AsyncCompletionStream:
        """Async-iterate a session's completions; see `errand.Client.completions`."""
        if self._closed:
            raise ClosedError("the client is closed")
        return AsyncCompletionStream(
            self._stub,
            session_id or self.session_id,
            after_seq,
            reconnect=reconnect,
            backoff=backoff or Backoff(),
            metadata=self._metadata,
        )


class AsyncCompletionStream(AsyncIterator[Completion]):
    """A reconnecting async iterator over one session's completions.

    `last_seq` is the seq of the last completion yielded.
    """

    def __init__(
        self,
        stub: pb_grpc.ToolServiceStub,
        session_id: str,
        after_seq: int,
        *,
        reconnect: bool,
        backoff: Backoff,
        metadata: Metadata,
    ) -> None:
        self.session_id = session_id
        self.last_seq = after_seq
        self.reconnects = 0
        self._stub = stub
        self._reconnect = reconnect
        self._backoff = backoff
        self._metadata = tuple(metadata)
        self._closed = asyncio.Event()
        self._call: Any = None

    def __aiter__(self) -> AsyncCompletionStream:
        return self

    async def __aenter__(self) -> AsyncCompletionStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream; a pending `__anext__` ends with StopAsyncIteration."""
        self._closed.set()
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def __anext__(self) -> Completion:
        while True:
            if self._closed.is_set():
                raise StopAsyncIteration
            if self._call is None:
                request = pb.CompletionsRequest(session_id=self.session_id, after_seq=self.last_seq)
                self._call = self._stub.Completions(
                    request, metadata=self._metadata, wait_for_ready=True
                )
            call = self._call
            try:
                msg = await call.read()
            except asyncio.CancelledError:
                if self._closed.is_set():
                    raise StopAsyncIteration from None
                raise
            except grpc.RpcError as exc:
                self._drop(call)
                if self._closed.is_set():
                    raise StopAsyncIteration from None
                if not (self._reconnect and exc.code() in RETRYABLE):
                    raise from_grpc(exc, "Completions") from None
                await self._retry()
                continue
            if msg is _EOF:
                # The server ended a stream that should never end: open it again.
                self._drop(call)
                if not self._reconnect:
                    raise StopAsyncIteration
                await self._retry()
                continue
            if msg.seq <= self.last_seq:
                continue
            self.last_seq = msg.seq
            self._backoff.reset()
            return completion_from_pb(msg)

    def _drop(self, call: Any) -> None:
        if self._call is call:
            self._call = None
        call.cancel()

    async def _retry(self) -> None:
        self.reconnects += 1
        try:
            await asyncio.wait_for(self._closed.wait(), self._backoff.next())
        except asyncio.TimeoutError:
            pass
