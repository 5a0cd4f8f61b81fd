"""Stand-ins for unit tests of the agent side: a scripted session and a scripted model.

`FakeSession` is an `AsyncClient` without a server: the test pushes events into
its `session_events` stream, scripts `pending_digest` texts (or whole
`PendingDigest`s) and sees every acknowledgement. `ScriptedModel` is the
model: it records each turn's message, and holds a turn open until the test
releases it, so that "busy" is a state the test controls rather than a duration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Callable, Optional, Union

from errand import AsyncClient, Completion, DeliveryPolicy, PendingDigest, Progress, TaskStatus
from errand.errors import Unimplemented

TIMEOUT = 10.0


def completion(
    seq: int, delivery: DeliveryPolicy = DeliveryPolicy.WHEN_IDLE, *, tool: str = "search"
) -> Completion:
    task_id = f"task{seq}"
    return Completion(
        seq=seq,
        task_id=task_id,
        session_id="s1",
        tool=tool,
        arguments_json="{}",
        status=TaskStatus.SUCCEEDED,
        result_json=f'"r{seq}"',
        error=None,
        elapsed_ms=5,
        attempts=1,
        message=f"<server text for {task_id}>",
        completed_at=None,
        delivery=delivery,
    )


def progress(task_id: str, index: int) -> Progress:
    return Progress(task_id, "search", index, float(index), 5.0, f"step {index}", "", 10, "s1")


class FakeStream:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Union[Completion, Progress, None]] = asyncio.Queue()
        self.last_seq = 0
        #: As the real stream's: how many times the server lost the
        #: session's completions (`reset()`: as when a --store memory
        #: server restarted and the stream followed the session afresh).
        self.resets = 0

    def __aiter__(self) -> AsyncIterator[Union[Completion, Progress]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Union[Completion, Progress]]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            if isinstance(item, Completion):
                self.last_seq = item.seq
            yield item

    async def aclose(self) -> None:
        self.queue.put_nowait(None)


class FakeSession(AsyncClient):
    """An AsyncClient whose session the test scripts (no channel, no server)."""

    session_id = "s1"  # type: ignore[assignment]  # shadows the property

    def __init__(
        self,
        digests: Optional[list[Union[str, PendingDigest]]] = None,
        *,
        digest_unimplemented: bool = False,
    ) -> None:
        self._closed = False
        self.stream = FakeStream()
        self.digests = list(digests or [])
        self.digest_calls = 0
        self.digest_unimplemented = digest_unimplemented
        self.acks: list[int] = []
        self.fail_acks = False
        self.stream_options: dict[str, Any] = {}

    async def _reach(self, method: str) -> None:
        return None  # a scripted session is always there

    def session_events(self, session_id: Optional[str] = None, **kw: Any) -> Any:
        self.stream_options = kw
        return self.stream

    async def pending_digest(
        self,
        session_id: Optional[str] = None,
        *,
        max_bytes: int = 0,
        timeout: Optional[float] = None,
    ) -> PendingDigest:
        self.digest_calls += 1
        if self.digest_unimplemented:
            import grpc

            raise Unimplemented(grpc.StatusCode.UNIMPLEMENTED, "no", "PendingDigest")
        text = self.digests.pop(0) if self.digests else ""
        if isinstance(text, PendingDigest):
            return text
        return PendingDigest([], 0, 0, text, 0, 0)

    async def ack_completions(self, up_to_seq: int, *, session_id: Optional[str] = None) -> int:
        if self.fail_acks:
            raise RuntimeError("ack refused (scripted)")
        self.acks.append(up_to_seq)
        return 1

    async def close(self) -> None:
        self._closed = True

    def push(self, item: Union[Completion, Progress]) -> None:
        self.stream.queue.put_nowait(item)

    def reset(self) -> None:
        """The server lost the session's completions and the stream follows
        it afresh: what is pushed next carries the new server's seqs (from 1)."""
        self.stream.resets += 1


class ScriptedModel:
    """Records turns; `hold` keeps the next turns open until `release()`."""

    def __init__(self, *, hold: bool = False) -> None:
        self.turns: list[str] = []
        self.hold = hold
        self._release = asyncio.Event()
        self._turn_started = asyncio.Event()
        self._turn_ended = asyncio.Event()
        self.in_turn = False

    async def send(self, message: str) -> str:
        self.turns.append(message)
        self.in_turn = True
        self._turn_started.set()
        try:
            if self.hold:
                await asyncio.wait_for(self._release.wait(), TIMEOUT)
                self._release.clear()
        finally:
            self.in_turn = False
            self._turn_ended.set()
        return "ok"

    def release(self) -> None:
        self._release.set()

    async def turn(self, n: int) -> str:
        """Wait until the model has started `n` turns; returns the n-th message."""

        async def wait() -> None:
            while len(self.turns) < n:
                self._turn_started.clear()
                await self._turn_started.wait()

        await asyncio.wait_for(wait(), TIMEOUT)
        return self.turns[n - 1]


class InterruptibleModel(ScriptedModel):
    """A ScriptedModel that also takes messages into the running turn."""

    def __init__(self, *, hold: bool = False, accept: bool = True) -> None:
        super().__init__(hold=hold)
        self.interrupts: list[tuple[str, bool]] = []  # (message, was a turn running)
        self.accept = accept
        self._interrupted = asyncio.Event()

    async def interrupt(self, message: str) -> bool:
        self.interrupts.append((message, self.in_turn))
        self._interrupted.set()
        return self.accept

    async def interrupted(self, n: int = 1) -> None:
        async def wait() -> None:
            while len(self.interrupts) < n:
                self._interrupted.clear()
                await self._interrupted.wait()

        await asyncio.wait_for(wait(), TIMEOUT)


class Statuses:
    """`on_status` of an AsyncAgent that the test can await."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[Any]]] = []
        self._changed = asyncio.Event()

    def __call__(self, status: str, items: list[Any]) -> None:
        self.seen.append((status, list(items)))
        self._changed.set()

    async def until(self, check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async def wait() -> None:
            while not check():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def count(self, status: str) -> int:
        return sum(1 for s, _ in self.seen if s == status)

    def items(self, status: str) -> list[Any]:
        return [item for s, items in self.seen if s == status for item in items]
