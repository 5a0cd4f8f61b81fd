"""AsyncAgent's delivery rules, with a scripted session and a scripted model (no server).

INTERRUPT reaches a busy agent through its interrupt() hook before its turn
ends (else it goes first at the next boundary, or at once when idle);
WHEN_IDLE waits for the turn and is coalesced; SILENT starts no turn and leads
the next user message; progress only reaches on_status; the digest text leads
each turn; acknowledgements never pass an undelivered result; prune stubs
acknowledged results only. Every text the model reads is the server's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Callable

import pytest

from errand import AsyncAgent, DeliveryPolicy, Progress

from .fakes import (
    TIMEOUT,
    FakeSession,
    InterruptibleModel,
    ScriptedModel,
    Statuses,
    completion,
    progress,
)

INTERRUPT, WHEN_IDLE, SILENT = (
    DeliveryPolicy.INTERRUPT,
    DeliveryPolicy.WHEN_IDLE,
    DeliveryPolicy.SILENT,
)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 4 * TIMEOUT))


def test_interrupt_reaches_a_busy_agent_through_its_hook_before_the_turn_ends() -> None:
    async def scenario() -> None:
        session, model, statuses = FakeSession(), InterruptibleModel(hold=True), Statuses()
        async with AsyncAgent(model, session, on_status=statuses) as agent:
            reply = asyncio.ensure_future(agent.send("plan my trip"))
            assert await model.turn(1) == "plan my trip"
            urgent, later = completion(1, INTERRUPT), completion(2, WHEN_IDLE)
            session.push(later)
            session.push(urgent)
            await model.interrupted()
            # Taken into the running turn, verbatim, while the turn was still open.
            assert model.interrupts == [(urgent.message, True)]
            assert len(model.turns) == 1 and not reply.done()
            model.release()
            assert await reply == "ok"
            # WHEN_IDLE waited for the turn's end; the interrupt was not repeated.
            assert await model.turn(2) == later.message
            model.release()
            await statuses.until(lambda: session.acks and session.acks[-1] == 2)
            assert statuses.count("delivered") == 2

    run(scenario)


def test_a_declined_interrupt_goes_first_at_the_next_boundary() -> None:
    async def scenario() -> None:
        session, model = FakeSession(), InterruptibleModel(hold=True, accept=False)
        statuses = Statuses()
        async with AsyncAgent(model, session, on_status=statuses) as agent:
            first_turn = asyncio.ensure_future(agent.send("hello"))
            await model.turn(1)
            first, urgent = completion(1, WHEN_IDLE), completion(2, INTERRUPT)
            session.push(first)
            session.push(urgent)
            await model.interrupted()
            await statuses.until(lambda: statuses.count("queued") == 2)
            model.release()
            message = await model.turn(2)
            assert message == f"{urgent.message}\n\n{first.message}"  # the interrupt first
            model.release()
            assert await first_turn == "ok"

    run(scenario)


def test_without_a_hook_an_interrupt_leads_the_next_user_message() -> None:
    async def scenario() -> None:
        session, model, statuses = FakeSession(), ScriptedModel(hold=True), Statuses()
        async with AsyncAgent(model, session, on_status=statuses, results_with_user=False) as agent:
            first_turn = asyncio.ensure_future(agent.send("one"))
            await model.turn(1)
            quiet, urgent = completion(1, WHEN_IDLE), completion(2, INTERRUPT)
            session.push(quiet)
            session.push(urgent)
            await statuses.until(lambda: statuses.count("queued") == 2)
            second = asyncio.ensure_future(agent.send("two"))
            model.release()
            # The user's turn is next; the interrupt rides with it even though
            # results_with_user=False keeps the WHEN_IDLE result for the turn after.
            assert await model.turn(2) == f"two\n\n{urgent.message}"
            model.release()
            assert await second == "ok" and await first_turn == "ok"
            assert await model.turn(3) == quiet.message
            model.release()

    run(scenario)


def test_an_interrupt_is_delivered_at_once_when_idle_without_the_batch_window() -> None:
    async def scenario() -> None:
        session, model = FakeSession(), InterruptibleModel()
        # A window far longer than the test's timeout: only INTERRUPT can skip it.
        async with AsyncAgent(model, session, batch_window=10 * TIMEOUT):
            urgent = completion(1, INTERRUPT)
            session.push(urgent)
            assert await model.turn(1) == urgent.message
            assert model.interrupts == []  # idle: a turn of its own, not the hook

    run(scenario)


def test_when_idle_results_wait_for_the_turn_and_are_coalesced() -> None:
    async def scenario() -> None:
        session, model, statuses = FakeSession(), ScriptedModel(hold=True), Statuses()
        async with AsyncAgent(model, session, on_status=statuses) as agent:
            first_turn = asyncio.ensure_future(agent.send("hi"))
            await model.turn(1)
            a, b = completion(1), completion(2)
            session.push(a)
            session.push(b)
            await statuses.until(lambda: statuses.count("queued") == 2)
            assert len(model.turns) == 1
            model.release()
            message = await model.turn(2)
            assert message == f"{a.message}\n\n{b.message}"
            model.release()
            assert await first_turn == "ok"
            await statuses.until(lambda: session.acks == [2])

    run(scenario)


def test_silent_starts_no_turn_and_leads_the_next_user_message() -> None:
    async def scenario() -> None:
        session, model, statuses = FakeSession(), ScriptedModel(), Statuses()
        async with AsyncAgent(model, session, on_status=statuses, batch_window=0) as agent:
            quiet, normal = completion(1, SILENT), completion(2, WHEN_IDLE)
            session.push(quiet)
            session.push(normal)
            # The WHEN_IDLE result after it started a turn; the SILENT one did not.
            assert await model.turn(1) == normal.message
            await statuses.until(lambda: statuses.count("delivered") == 1)
            assert agent.silent == [quiet]
            # Seq 1 is not delivered yet: nothing is acknowledged past it.
            assert session.acks == []
            await agent.send("what's new?")
            assert model.turns[1] == f"{quiet.message}\n\nwhat's new?"
            await statuses.until(lambda: session.acks == [2])
            assert agent.silent == [] and agent.acked_seq == 2

    run(scenario)


def test_progress_goes_to_on_status_and_never_starts_a_turn() -> None:
    async def scenario() -> None:
        session, model, statuses = FakeSession(), ScriptedModel(), Statuses()
        async with AsyncAgent(model, session, on_status=statuses, batch_window=0):
            assert session.stream_options["include_progress"] is True
            reports = [progress("task1", i) for i in (1, 2, 3)]
            for report in reports:
                session.push(report)
            done = completion(1)
            session.push(done)
            assert await model.turn(1) == done.message
            got = [items[0] for s, items in statuses.seen if s == "progress"]
            assert got == reports and all(isinstance(p, Progress) for p in got)
            assert model.turns == [done.message]

    run(scenario)


def test_the_digest_text_leads_each_turn_verbatim_when_not_empty() -> None:
    async def scenario() -> None:
        digest = "<server digest: 1 call pending>"
        session, model = FakeSession(digests=[digest, ""]), ScriptedModel()
        async with AsyncAgent(model, session, batch_window=0) as agent:
            await agent.send("status?")
            assert model.turns == [f"{digest}\n\nstatus?"]
            done = completion(1)
            session.push(done)
            assert await model.turn(2) == done.message  # the digest was "" now
            assert session.digest_calls == 2

    run(scenario)


def test_a_server_without_pending_digest_is_asked_once() -> None:
    async def scenario() -> None:
        session, model = FakeSession(digest_unimplemented=True), ScriptedModel()
        async with AsyncAgent(model, session) as agent:
            await agent.send("a")
            await agent.send("b")
            assert model.turns == ["a", "b"]
            assert session.digest_calls == 1

    run(scenario)


def test_prune_stubs_older_acknowledged_results_and_never_pending_ones() -> None:
    async def scenario() -> None:
        session, model, statuses = FakeSession(), ScriptedModel(), Statuses()
        async with AsyncAgent(model, session, on_status=statuses, batch_window=0) as agent:
            done = [completion(i) for i in (1, 2, 3, 4)]
            for n, c in enumerate(done[:3], 1):
                session.push(c)
                await model.turn(n)
                await statuses.until(lambda n=n: statuses.count("delivered") == n)
            session.fail_acks = True  # the 4th is delivered but not acknowledged
            session.push(done[3])
            await model.turn(4)
            await statuses.until(lambda: statuses.count("delivered") == 4)
            assert agent.acked_seq == 3
            history: list[Any] = [{"role": "user", "content": "research"}]
            history += [{"role": "user", "content": m} for m in model.turns]
            history.append("a plain string turn")
            pruned = agent.prune(history, keep_results=1)
            stubbed = [h["content"] for h in pruned[1:5]]
            assert stubbed[0] == "[result of task task1 (search) pruned]"
            assert stubbed[1] == "[result of task task2 (search) pruned]"
            assert stubbed[2] == done[2].message  # the last acknowledged one is kept
            assert stubbed[3] == done[3].message  # not acknowledged: untouched
            assert pruned[0] == history[0] and pruned[-1] == history[-1]
            assert history[1]["content"] == done[0].message  # the input is not changed
            everything = agent.prune(history, keep_results=0, stub=lambda c: f"<{c.seq}>")
            assert [h["content"] for h in everything[1:5]] == ["<1>", "<2>", "<3>", done[3].message]

    run(scenario)


@pytest.mark.parametrize("bad", [-1])
def test_prune_refuses_a_negative_keep(bad: int) -> None:
    async def scenario() -> None:
        async with AsyncAgent(ScriptedModel(), FakeSession()) as agent:
            with pytest.raises(ValueError, match="keep_results"):
                agent.prune([], keep_results=bad)

    run(scenario)
