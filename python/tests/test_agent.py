"""AsyncAgent against the real server: delivery order, queueing while busy, draining."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Callable, Optional

import pytest

from errand import (
    AsyncAgent,
    AsyncClient,
    AsyncCompletionStream,
    Client,
    Completion,
    PendingDigest,
    SyncAgent,
    TaskStatus,
    Worker,
    async_tool,
    prune_history,
    sync_agent,
)
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, Quiet, unique


class Gates:
    """A tool whose calls each wait for the test to open their gate."""

    def __init__(self) -> None:
        self._gates: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self._lock = threading.Lock()

        @async_tool(name=unique("gated"))
        def gated(key: str) -> str:
            """Wait for the test, then answer."""
            with self._lock:
                gate = self._gates[key]
            if not gate.wait(EVENT_TIMEOUT):
                raise TimeoutError(f"gate {key} never opened")
            return f"done {key}"

        self.tool = gated
        self.name = tool_def(gated).name

    def open(self, key: str) -> None:
        with self._lock:
            self._gates[key].set()


class RecordingAgent:
    """An agent whose turns the test can hold open."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[str] = asyncio.Queue()
        self.received: list[str] = []
        self.in_turn = asyncio.Event()
        self.hold: Optional[asyncio.Event] = None

    async def send(self, message: str) -> str:
        self.received.append(message)
        await self.messages.put(message)
        if self.hold is not None:
            self.in_turn.set()
            hold, self.hold = self.hold, None
            await hold.wait()
        return f"reply to {message[:20]}"


class Statuses:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[str]]] = []
        self.queue: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue()

    def __call__(self, status: str, completions: Sequence[Completion]) -> None:
        event = (status, [c.task_id for c in completions])
        self.events.append(event)
        self.queue.put_nowait(event)

    async def expect(self, status: str) -> list[str]:
        got, ids = await asyncio.wait_for(self.queue.get(), EVENT_TIMEOUT)
        assert got == status, (got, ids, self.events)
        return ids


async def next_completion(stream: AsyncCompletionStream) -> Completion:
    return await asyncio.wait_for(stream.__anext__(), EVENT_TIMEOUT)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_out_of_order_results_arrive_in_completion_order(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    gates = Gates()
    start_worker(gates.tool, max_concurrency=4)

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            agent = RecordingAgent()
            statuses = Statuses()
            # ack=False: the agent must not release completions that the
            # second stream below has yet to read.
            async with AsyncAgent(agent, client, on_status=statuses, ack=False) as async_agent:
                acks = {k: await async_agent.submit(gates.name, key=k) for k in "abc"}
                # A second stream on the session tells the test when each task
                # finished, so the completion order is c, a, b for certain.
                watch = client.completions()
                for k in "cab":
                    gates.open(k)
                    assert (await next_completion(watch)).task_id == acks[k].task_id
                await watch.aclose()

                expected = [acks[k].task_id for k in "cab"]
                delivered: list[str] = []
                while len(delivered) < 3:
                    status, ids = await asyncio.wait_for(statuses.queue.get(), EVENT_TIMEOUT)
                    if status == "delivered":
                        delivered.extend(ids)
                assert delivered == expected
                assert [c.task_id for c in async_agent.delivered] == expected
                assert [c.result for c in async_agent.delivered] == ["done c", "done a", "done b"]
                seqs = [c.seq for c in async_agent.delivered]
                assert seqs == sorted(seqs)
                # Every message names its task(s), in completion order.
                text = "\n".join(agent.received)
                positions = [text.index(task_id) for task_id in expected]
                assert positions == sorted(positions)
                assert all(c.tool == gates.name for c in async_agent.delivered)

    run(scenario())


def test_results_are_delivered_at_once_when_idle(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    gates = Gates()
    start_worker(gates.tool)

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            agent = RecordingAgent()
            statuses = Statuses()
            async with AsyncAgent(agent, client, on_status=statuses) as async_agent:
                ack = await async_agent.submit(gates.name, key="k")
                gates.open("k")
                message = await asyncio.wait_for(agent.messages.get(), EVENT_TIMEOUT)
                assert ack.task_id in message
                assert "done k" in message
                assert await statuses.expect("delivered") == [ack.task_id]
                assert statuses.events == [("delivered", [ack.task_id])]  # never queued

    run(scenario())


def test_results_queue_while_busy_and_drain_as_one_batch(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    gates = Gates()
    start_worker(gates.tool, max_concurrency=4)

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            agent = RecordingAgent()
            statuses = Statuses()
            # digest=False: the user's turn is checked word for word (the digest of
            # the two pending calls would lead it; see tests/test_model_sees.py).
            async with AsyncAgent(agent, client, on_status=statuses, digest=False) as async_agent:
                x = await async_agent.submit(gates.name, key="x")
                y = await async_agent.submit(gates.name, key="y")
                agent.hold = asyncio.Event()
                hold = agent.hold
                turn = asyncio.ensure_future(async_agent.send("a long user turn"))
                await asyncio.wait_for(agent.in_turn.wait(), EVENT_TIMEOUT)
                assert async_agent.busy

                gates.open("y")
                assert await statuses.expect("queued") == [y.task_id]
                gates.open("x")
                assert await statuses.expect("queued") == [x.task_id]
                assert [c.task_id for c in async_agent.pending] == [y.task_id, x.task_id]
                assert async_agent.state == "busy" and not async_agent.is_idle()
                assert agent.received == ["a long user turn"]  # nothing delivered mid-turn

                hold.set()
                reply = await asyncio.wait_for(turn, EVENT_TIMEOUT)
                assert reply == "reply to a long user turn"
                assert await statuses.expect("draining") == [y.task_id, x.task_id]
                assert await statuses.expect("delivered") == [y.task_id, x.task_id]
                assert len(agent.received) == 2  # one batched message for both
                batch = agent.received[1]
                assert batch.index(y.task_id) < batch.index(x.task_id)
                assert "done y" in batch and "done x" in batch
                assert async_agent.pending == []
                assert not async_agent.busy
                assert async_agent.state == "idle" and async_agent.is_idle()

                # Pruning drops the delivered results from a history, keeps the rest.
                history = [{"role": "user", "content": m} for m in agent.received]
                assert async_agent.prune(history) == [history[0]]

    run(scenario())


def test_an_agent_busy_on_its_own_gets_results_on_drain(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    gates = Gates()
    start_worker(gates.tool)

    class SyncAgent:
        """A plain (blocking) agent with its own notion of busy."""

        def __init__(self) -> None:
            self.idle = False
            self.received: list[str] = []
            self.got = threading.Event()

        def is_idle(self) -> bool:
            return self.idle

        def send(self, message: str) -> None:
            self.received.append(message)
            self.got.set()

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            agent = SyncAgent()
            statuses = Statuses()
            async with AsyncAgent(agent, client, on_status=statuses) as async_agent:
                ack = await async_agent.submit(gates.name, key="q")
                gates.open("q")
                assert await statuses.expect("queued") == [ack.task_id]
                assert agent.received == []
                assert async_agent.state == "queued"
                agent.idle = True
                await async_agent.drain()
                assert await statuses.expect("draining") == [ack.task_id]
                assert await statuses.expect("delivered") == [ack.task_id]
                assert len(agent.received) == 1 and ack.task_id in agent.received[0]
                assert async_agent.delivered[0].status == TaskStatus.SUCCEEDED

    run(scenario())


def test_prune_history_formats() -> None:
    delivered = ["Async result for task t1: 42", "Async result for task t2: 43"]
    history: list[Any] = [
        {"role": "user", "content": "hi"},
        {"role": "user", "content": delivered[0]},
        {"role": "assistant", "content": "noted"},
        {"role": "user", "content": [{"type": "text", "text": delivered[1]}]},
        "plain string",
    ]
    assert prune_history(history, delivered) == [history[0], history[2], history[4]]
    assert prune_history(history, delivered, keep_last=1) == [
        history[0],
        history[2],
        history[3],
        history[4],
    ]


def test_closing_lets_the_stream_reader_end_rather_than_cancelling_it(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    # A cancelled reader leaves its gRPC read in flight; when it completed
    # after asyncio.run closed the loop, a Worker's loop in the same process
    # printed "RuntimeError: Event loop is closed" tracebacks (report #20).
    gates = Gates()
    start_worker(gates.tool)

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            statuses = Statuses()
            async with AsyncAgent(RecordingAgent(), client, on_status=statuses) as async_agent:
                ack = await async_agent.submit(gates.name, key="k")
                gates.open("k")
                assert await statuses.expect("delivered") == [ack.task_id]
            listener = async_agent._listener
            assert listener is not None and listener.done() and not listener.cancelled()
            assert listener.exception() is None
            # The stream's own end ended it: no cancel() was asked of it (the
            # reader swallows one once closed, so only this count shows it).
            if sys.version_info >= (3, 11):
                assert listener.cancelling() == 0, "the reader was cancelled mid-read"

    run(scenario())


class InFlight(AsyncClient):
    """An AsyncClient that says when the agent's own calls are on the wire."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acking = asyncio.Event()
        self.digesting = asyncio.Event()

    async def ack_completions(self, up_to_seq: int, *, session_id: Optional[str] = None) -> int:
        self.acking.set()
        return await super().ack_completions(up_to_seq, session_id=session_id)

    async def pending_digest(
        self,
        session_id: Optional[str] = None,
        *,
        max_bytes: int = 0,
        timeout: Optional[float] = None,
    ) -> PendingDigest:
        self.digesting.set()
        return await super().pending_digest(session_id, max_bytes=max_bytes, timeout=timeout)


def test_closing_with_acks_and_digests_in_flight_prints_nothing(server: str, quiet: Quiet) -> None:
    # close() cancelled the turn loop mid-AckCompletions/PendingDigest: the
    # cancelled calls' gRPC operations completed after asyncio.run closed the
    # loop, and gRPC's poller printed "RuntimeError: Event loop is closed"
    # tracebacks (through whichever loop read its events next).
    @async_tool(name=unique("echo"))
    def echo(i: int) -> int:
        return i

    name = tool_def(echo).name
    worker = Worker(server, tools=[echo], max_concurrency=8, name="agent-test")
    worker.start(timeout=EVENT_TIMEOUT)

    async def scenario(wait_for: str) -> None:
        quiet.watch()
        async with InFlight(server, session_id=unique("session")) as client:
            agent = AsyncAgent(RecordingAgent(), client, batch_window=0)
            await agent.start()
            for i in range(20):
                await client.submit(name, i=i)
            # Close while the turn loop's own call is on the wire.
            await asyncio.wait_for(getattr(client, wait_for).wait(), EVENT_TIMEOUT)
            await agent.close()

    try:
        for i in range(20):
            asyncio.run(scenario("acking" if i % 2 else "digesting"))
            quiet.round_trip()
    finally:
        worker.stop()
    assert worker.error is None
    quiet.check()


class Blocking:
    """A blocking agent that says when it got its first message."""

    def __init__(self) -> None:
        self.delivered = threading.Event()

    def send(self, message: str) -> str:
        self.delivered.set()
        return "ok"


class ThreadInFlight(AsyncClient):
    """An AsyncClient (on SyncAgent's own loop) that tells another thread
    when an AckCompletions call is on the wire."""

    acking = threading.Event()

    async def ack_completions(self, up_to_seq: int, *, session_id: Optional[str] = None) -> int:
        ThreadInFlight.acking.set()
        return await super().ack_completions(up_to_seq, session_id=session_id)


def test_closing_a_sync_agent_with_acks_in_flight_prints_nothing(
    server: str, quiet: Quiet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same on SyncAgent's private loop, which close() stops and closes.
    monkeypatch.setattr(sync_agent, "AsyncClient", ThreadInFlight)

    @async_tool(name=unique("echo"))
    def echo(i: int) -> int:
        return i

    name = tool_def(echo).name
    worker = Worker(server, tools=[echo], max_concurrency=8)
    worker.start(timeout=EVENT_TIMEOUT)
    try:
        for _ in range(10):
            ThreadInFlight.acking.clear()
            with Client(server, session_id=unique("session")) as client:
                agent = SyncAgent(Blocking(), client, batch_window=0)
                for i in range(20):
                    client.submit(name, i=i)
                assert ThreadInFlight.acking.wait(EVENT_TIMEOUT)
                agent.close()  # while an AckCompletions is on the wire
            quiet.round_trip()
    finally:
        worker.stop()
    assert worker.error is None
    quiet.check()
