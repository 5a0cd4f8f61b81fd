"""After a stream reset (a --store memory server restarted: the stream
follows the session afresh, its seqs start again at 1), the agent and the
manager never acknowledge on behalf of the old server's completions, and an
old seq never stands for a new one. The old completions not yet delivered
are still delivered to the model (review item 1: the old seqs stayed in the
undelivered set, so acks went to the new server for seqs it never assigned,
OUT_OF_RANGE or, worse, completions never delivered).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any, Callable, Optional

from errand import AsyncAgent, AsyncToolManager, DeliveryPolicy
from errand.manager import AsyncTaskResult
from errand.types import Completion

from .fakes import TIMEOUT, FakeSession, ScriptedModel, Statuses, completion

SILENT, WHEN_IDLE = DeliveryPolicy.SILENT, DeliveryPolicy.WHEN_IDLE


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 4 * TIMEOUT))


def old(seq: int, delivery: DeliveryPolicy = WHEN_IDLE) -> Completion:
    made = completion(seq, delivery)
    return Completion(**{**made.__dict__, "task_id": f"old{seq}", "message": f"<old {seq}>"})


def test_old_completions_held_at_a_reset_are_delivered_but_never_acked() -> None:
    """Old SILENT 2 and 41 wait for the next user message when the server
    restarts; the new 1, 2, 3 are delivered: the ack is 3, not 40 (below
    the old 41), and the new 2 does not stand for the old one."""

    async def scenario() -> None:
        session, model, statuses = FakeSession(), ScriptedModel(), Statuses()
        async with AsyncAgent(model, session, on_status=statuses, batch_window=0) as agent:
            session.push(old(2, SILENT))
            session.push(old(41, SILENT))
            await statuses.until(lambda: statuses.count("queued") == 2)
            session.reset()
            for seq in (1, 2, 3):
                session.push(completion(seq))
            await statuses.until(lambda: len(statuses.items("delivered")) == 3)
            await statuses.until(lambda: bool(session.acks))
            assert session.acks == [3]
            assert agent.acked_seq == 3
            await agent.send("hi")  # the old ones lead it: still delivered
            assert "<old 2>" in model.turns[-1] and "<old 41>" in model.turns[-1]
            assert len(statuses.items("delivered")) == 5
            assert session.acks == [3]  # nothing acked on their behalf

    run(scenario)


def test_no_ack_while_a_reset_is_pending() -> None:
    """Old 41 and 42 queued in a busy agent; the server restarts; they are
    delivered before any new completion arrives: nothing is acked (the old
    code acked 42 to the new server); the first new one is."""

    async def scenario() -> None:
        session, model, statuses = FakeSession(), ScriptedModel(hold=True), Statuses()
        async with AsyncAgent(model, session, on_status=statuses, batch_window=0) as agent:
            reply = asyncio.ensure_future(agent.send("plan"))
            await model.turn(1)
            session.push(old(41))
            session.push(old(42))
            await statuses.until(lambda: statuses.count("queued") == 2)
            session.reset()
            model.release()
            await reply
            await model.turn(2)
            model.release()
            await statuses.until(lambda: len(statuses.items("delivered")) == 2)
            await agent.drain()
            assert session.acks == []
            session.push(completion(1))
            await model.turn(3)
            model.release()
            await statuses.until(lambda: bool(session.acks))
            assert session.acks == [1]

    run(scenario)


def test_no_ack_of_old_seqs_while_the_first_new_one_waits_for_room() -> None:
    """The model reads old 41 while old 42 and 43 fill the agent
    (max_pending=2); the server restarts and the new 1 arrives: the listener
    has counted the reset, but the new 1 waits for room before the agent takes
    it in. The end of 41's turn must not ack 41 to the new server (the reset
    no longer looked pending, the epoch was still the old one); the new 1 is
    acked."""

    async def scenario() -> None:
        session, model, statuses = FakeSession(), ScriptedModel(hold=True), Statuses()
        async with AsyncAgent(
            model, session, on_status=statuses, batch_window=0, max_pending=2
        ) as agent:
            waiting = asyncio.Event()
            take = agent.on_completion

            async def on_completion(c: Completion) -> None:
                if c.task_id != f"old{c.seq}":
                    waiting.set()  # `take` runs on to its wait for room
                await take(c)

            agent.on_completion = on_completion  # type: ignore[method-assign]
            reply = asyncio.ensure_future(agent.send("plan"))
            await model.turn(1)
            session.push(old(41))
            await statuses.until(lambda: statuses.count("queued") == 1)
            model.release()
            await reply
            assert "<old 41>" in await model.turn(2)
            session.push(old(42))
            session.push(old(43))
            await statuses.until(lambda: statuses.count("queued") == 3)
            session.reset()
            session.push(completion(1))
            await asyncio.wait_for(waiting.wait(), TIMEOUT)
            model.release()
            assert "<old 42>" in await model.turn(3)
            model.release()
            await model.turn(4)
            model.release()
            await statuses.until(lambda: len(statuses.items("delivered")) == 4)
            await agent.drain()
            assert session.acks == [1]

    run(scenario)


class ResettingStream:
    """A manager's session stream the test drives: each step yields a
    completion, or runs an action between them."""

    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps
        self.resets = 0
        self.last_seq = 0

    def __iter__(self) -> Iterator[Any]:
        for step in self.steps:
            if callable(step):
                step(self)
            else:
                yield step


class Acks:
    def __init__(self) -> None:
        self.seqs: list[int] = []

    def ack_completions(self, up_to_seq: int, *, session_id: Optional[str] = None) -> int:
        self.seqs.append(up_to_seq)
        return 1


def test_the_manager_never_acks_old_seqs_after_a_reset() -> None:
    manager = AsyncToolManager(max_workers=1, target="127.0.0.1:1")
    acks = Acks()
    manager._client = acks  # type: ignore[assignment]
    given: list[AsyncTaskResult] = []

    def owner(result: AsyncTaskResult) -> None:
        given.append(result)

    manager.add_done_callback(owner, owns=True)

    def reset(stream: ResettingStream) -> None:
        stream.resets += 1

    def deliver(*seqs: int) -> Callable[[ResettingStream], None]:
        return lambda _: manager.delivered(owner, seqs)

    stream = ResettingStream(
        [
            old(41),
            old(42),
            reset,
            deliver(41),  # pending reset: the old 41 is not the new server's
            completion(1),
            completion(2),
            deliver(42),  # the old 42: not the new server's either
            deliver(1),
        ]
    )
    manager._stream = stream  # type: ignore[assignment]
    manager._listen(stream)  # type: ignore[arg-type]
    assert [r.completion.seq for r in given] == [41, 42, 1, 2]
    assert acks.seqs == [40, 1]  # 40: the old server's, before its restart
    manager._stream = None


def test_an_agent_on_a_manager_reports_only_the_new_servers_seqs() -> None:
    """The agent delivers the old 1 while the new 1 (SILENT) waits for the
    next user message: the manager must not take the old one's delivery for
    the new one's and acknowledge it."""
    manager = AsyncToolManager(max_workers=1, target="127.0.0.1:1")
    acks = Acks()
    manager._client = acks  # type: ignore[assignment]
    manager.ensure_started = lambda: None  # type: ignore[method-assign]
    done = threading.Event()

    def reset(stream: ResettingStream) -> None:
        stream.resets += 1

    stream = ResettingStream([old(1), reset, completion(1, SILENT)])

    def listen() -> None:
        manager._listen(stream)  # type: ignore[arg-type]
        done.set()

    async def scenario() -> None:
        model, statuses = ScriptedModel(hold=True), Statuses()
        async with AsyncAgent(
            model, manager, on_status=statuses, batch_window=0, digest=False
        ) as agent:
            reply = asyncio.ensure_future(agent.send("plan"))
            await model.turn(1)
            manager._stream = stream  # type: ignore[assignment]
            threading.Thread(target=listen, daemon=True).start()
            await statuses.until(lambda: statuses.count("queued") == 2)
            model.release()
            await reply
            assert "<old 1>" in await model.turn(2)
            model.release()
            await statuses.until(lambda: len(statuses.items("delivered")) == 1)
            await agent.drain()
            assert acks.seqs == []  # the new 1 is not delivered yet
            second = asyncio.ensure_future(agent.send("more"))
            await model.turn(3)
            model.release()
            await second
            await statuses.until(lambda: len(statuses.items("delivered")) == 2)
            await agent.drain()
            assert await asyncio.to_thread(done.wait, TIMEOUT)
            assert acks.seqs == [1]
            manager._stream = None

    run(scenario)


def test_a_hand_over_keeps_the_epoch_its_results_were_given_out_in() -> None:
    """An owner went away holding the old 1; the next owner is handed it on a
    thread of its own, but the server restarts before that thread runs and
    the new 1 is given out. The old 1 must keep the old epoch (the agent
    read the manager's reset count when the hand-over ran): its delivery
    releasing the new 1 acked it, undelivered."""
    manager = AsyncToolManager(max_workers=1, target="127.0.0.1:1")
    acks = Acks()
    manager._client = acks  # type: ignore[assignment]

    def first(result: AsyncTaskResult) -> None:
        pass

    manager.add_done_callback(first, owns=True)
    before = ResettingStream([old(1)])
    manager._stream = before  # type: ignore[assignment]
    manager._listen(before)  # type: ignore[arg-type]
    manager.remove_done_callback(first)  # the old 1 waits for the next owner
    go, handed = threading.Event(), threading.Event()
    given: list[tuple[str, int]] = []

    def second(result: AsyncTaskResult) -> None:
        if threading.current_thread().name == "errand-handover":
            assert go.wait(TIMEOUT)  # the server restarts first
        # What AsyncAgent.on_result records as the result's epoch:
        given.append((result.task_id, manager._given_resets()))
        handed.set()

    manager.add_done_callback(second, owns=True)

    def reset(stream: ResettingStream) -> None:
        stream.resets += 1

    after = ResettingStream([reset, completion(1)])
    manager._stream = after  # type: ignore[assignment]
    manager._listen(after)  # type: ignore[arg-type]
    assert given == [(completion(1).task_id, 1)]
    handed.clear()
    go.set()
    assert handed.wait(TIMEOUT)
    (task_id, epoch), new_epoch = given[1], given[0][1]
    assert task_id == "old1" and epoch == 0
    manager._release(second, [1], epoch)  # the old 1 delivered: releases nothing
    assert acks.seqs == []
    manager._release(second, [1], new_epoch)
    assert acks.seqs == [1]
    manager._stream = None
