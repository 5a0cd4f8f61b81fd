"""The digest a turn leads with agrees with what the model is shown.

The server's PendingDigest counts every completion not acknowledged yet:
"N results of earlier calls have arrived and have not yet been
acknowledged." The agent acknowledges a turn's results after the turn, so
that count used to take in the very results that followed in the same
message, and those the model had already been shown (through interrupt(),
or in a turn whose acknowledgement an undelivered result held back). The
agent now counts only the results the model has not been shown: it leaves
the sentence out when there are none, and says how many there are otherwise,
in the server's words, but for SILENT ones: the model cannot see them until
the next user message, and is told so rather than that they have arrived.
The list of pending calls is kept as the server gave it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from errand import (
    AsyncAgent,
    AsyncClient,
    AsyncToolManager,
    DeliveryPolicy,
    PendingDigest,
    Worker,
    async_tool,
)
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, unique
from .fakes import FakeSession, InterruptibleModel, ScriptedModel, Statuses, completion

UNACKED = "not yet been acknowledged"
ONE_SILENT = "1 result of earlier calls will be shown with the next user message."


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 4 * EVENT_TIMEOUT))


def tools(start_worker: Callable[..., Worker]) -> tuple[str, str, threading.Event]:
    """A quick tool, a SILENT one, and a gate that holds the quick one's `hold` calls."""
    gate = threading.Event()

    @async_tool(name=unique("quick"))
    def quick(n: int, hold: bool = False) -> int:
        if hold:
            gate.wait(EVENT_TIMEOUT)
        return n

    @async_tool(name=unique("quiet"), delivery="silent")
    def quiet(n: int) -> int:
        return n

    start_worker(quick, quiet, max_concurrency=4)
    return tool_def(quick).name, tool_def(quiet).name, gate


def test_a_result_in_the_same_message_is_not_counted_as_unacknowledged(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    quick, _, gate = tools(start_worker)

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            model = ScriptedModel()
            async with AsyncAgent(model, client) as agent:
                held = await agent.submit(quick, n=1, hold=True)
                done = await agent.submit(quick, n=2)
                message = await model.turn(1)
                assert done.task_id in message
                # The pending call is still listed, verbatim; the result that
                # follows in this message is not called unacknowledged.
                assert message.startswith("Pending tool calls: 1 still queued or running.")
                assert held.task_id[:8] in message.split("\n\n")[0]
                assert UNACKED not in message, message
                gate.set()
                assert held.task_id in await model.turn(2)
                assert UNACKED not in model.turns[1], model.turns[1]

    try:
        run(scenario)
    finally:
        gate.set()


def test_results_shown_through_interrupt_are_not_counted_either(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    quick, _, _ = tools(start_worker)

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            model, statuses = InterruptibleModel(hold=True), Statuses()
            async with AsyncAgent(model, client, on_status=statuses, batch_window=0) as agent:
                user = asyncio.ensure_future(agent.send("go on"))
                await model.turn(1)  # held open: the agent is busy
                queued = await agent.submit(quick, n=1)  # WHEN_IDLE: queued behind the turn
                await statuses.until(lambda: statuses.count("queued") == 1)
                urgent = await agent.submit(quick, n=2, delivery="interrupt")
                await model.interrupted()
                assert urgent.task_id in model.interrupts[0][0]
                model.hold = False
                model.release()
                await asyncio.wait_for(user, EVENT_TIMEOUT)
                message = await model.turn(2)
                # seq 1 follows here, seq 2 was shown by interrupt(): the
                # server still counts both (seq 1 held the ack back).
                assert queued.task_id in message
                assert UNACKED not in message, message

    run(scenario)


def test_a_result_the_model_has_not_been_shown_is_still_counted(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    quick, quiet, _ = tools(start_worker)

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            model, statuses = ScriptedModel(), Statuses()
            async with AsyncAgent(model, client, on_status=statuses, batch_window=0) as agent:
                silent = await agent.submit(quiet, n=1)  # waits for the next user message
                await statuses.until(lambda: len(agent.silent) == 1)
                shown = await agent.submit(quick, n=2)
                message = await model.turn(1)
                assert shown.task_id in message and silent.task_id not in message
                # Two unacknowledged on the server; one of them is in this message,
                # the other (SILENT) waits for the user: not said to have arrived.
                assert message.startswith(f"No tool calls are pending. {ONE_SILENT}\n\n"), message
                assert "arrived" not in message.split("\n\n")[0]
                await agent.send("anything new?")
                last = model.turns[1]
                assert silent.task_id in last and UNACKED not in last, last
                assert ONE_SILENT not in last, last

    run(scenario)


def test_the_same_on_a_manager(server: str) -> None:
    manager = AsyncToolManager(max_workers=2, session_id=unique("session"))

    @async_tool(manager, name=unique("lookup"))
    def lookup(term: str) -> str:
        return f"def of {term}"

    async def scenario() -> None:
        model = ScriptedModel()
        async with AsyncAgent(model, manager) as agent:
            ack = await agent.submit(tool_def(lookup.run).name, term="a")  # type: ignore[attr-defined]
            message = await model.turn(1)
            assert ack.task_id in message and UNACKED not in message, message

    try:
        run(scenario)
    finally:
        manager.stop()


def digest(text: str, last_seq: int, acked_seq: int, pending: int = 0) -> PendingDigest:
    return PendingDigest([], last_seq, acked_seq, text, last_seq - acked_seq, pending)


def test_the_count_says_how_many_are_unshown_and_unknown_wording_is_left_as_is() -> None:
    pending = "Pending tool calls: 1 still queued or running. (...)\n- task t9 `x` {}: queued\n"
    three = "3 results of earlier calls have arrived and have not yet been acknowledged.\n"

    async def scenario() -> None:
        session = FakeSession(
            digests=[
                # seqs 1-3 unacknowledged: 1 and 2 held here (SILENT, for the next
                # user message), 3 in the message.
                digest(pending + three, 3, 0, pending=1),
                # A server's wording this SDK does not know: left as it is.
                digest("3 results are waiting.", 3, 0),
            ]
        )
        model = ScriptedModel()
        async with AsyncAgent(model, session, batch_window=0):
            session.push(completion(1, DeliveryPolicy.SILENT))
            session.push(completion(2, DeliveryPolicy.SILENT))
            session.push(completion(3))
            first = await model.turn(1)
            assert first.startswith(
                pending + "2 results of earlier calls will be shown with the next user "
                "message.\n\n<server text for task3>"
            ), first
            session.push(completion(4))
            assert (await model.turn(2)).startswith("3 results are waiting.\n\n")

    run(scenario)
