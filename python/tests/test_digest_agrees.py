"""Every digest the model reads says the same about results it has not seen.

Two digests reach the model: the one `AsyncAgent` prepends to each turn, and
the answer of the `errand_pending` session tool the framework adapters give
the model. Both come from the server's PendingDigest, whose count takes in
every completion not acknowledged yet; the agent acknowledges a turn's
results after the turn. One rule (`errand._digest.digest_text`) makes that
count the results the model has not been shown, for both: while the model
handles the message that carries a result, `errand_pending` does not call that
result "arrived and not yet acknowledged" any more than the digest leading the
message does.

A SILENT result waits for the next user message: the model cannot see it, so
the digest does not say it "has arrived" (which invites the model to speak of
it) but that it will be shown with the next user message.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import pytest

from errand import (
    AsyncAgent,
    AsyncClient,
    Client,
    DeliveryPolicy,
    PendingDigest,
    Worker,
    async_tool,
)
from errand.integrations import SessionTool, session_tools
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, unique
from .fakes import FakeSession, ScriptedModel, Statuses, completion

UNACKED = "not yet been acknowledged"
NO_CALLS = "No tool calls are pending. "
ONE_SILENT = "1 result of earlier calls will be shown with the next user message."


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 4 * EVENT_TIMEOUT))


def pending_tool(client: Any) -> SessionTool:
    return next(t for t in session_tools(client) if t.name == "errand_pending")


class AsksPending:
    """A model that, in each turn, calls `errand_pending` before it answers
    (as a framework's model calls the session tool mid-turn)."""

    def __init__(self, tool: SessionTool) -> None:
        self.tool = tool
        self.turns: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def send(self, message: str) -> str:
        answer = await self.tool.call({})
        self.turns.put_nowait((message, answer))
        return "ok"

    async def turn(self) -> tuple[str, str]:
        return await asyncio.wait_for(self.turns.get(), EVENT_TIMEOUT)


class AsksPendingOnAThread(AsksPending):
    """The same with a plain `send` (run on a thread) whose framework calls the
    tool on an event loop of its own, not the agent's."""

    def __init__(self, tool: SessionTool) -> None:
        super().__init__(tool)
        self.loop = asyncio.get_running_loop()

    def send(self, message: str) -> str:  # type: ignore[override]
        answer = asyncio.run(self.tool.call({}))
        self.loop.call_soon_threadsafe(self.turns.put_nowait, (message, answer))
        return "ok"


@pytest.mark.parametrize("model_kind", [AsksPending, AsksPendingOnAThread], ids=["async", "thread"])
def test_errand_pending_mid_turn_agrees_with_the_digest_leading_the_message(
    server: str, start_worker: Callable[..., Worker], model_kind: type[AsksPending]
) -> None:
    gate = threading.Event()

    @async_tool(name=unique("quick"))
    def quick(n: int, hold: bool = False) -> int:
        if hold:
            gate.wait(EVENT_TIMEOUT)
        return n

    start_worker(quick, max_concurrency=4)
    name = tool_def(quick).name
    session = unique("session")

    async def scenario() -> None:
        with Client(server, session_id=session) as tools_client:
            model = model_kind(pending_tool(tools_client))
            async with AsyncClient(server, session_id=session) as client:
                agent = AsyncAgent(model, client, batch_window=0)
                async with agent:
                    held = await agent.submit(name, n=1, hold=True)
                    done = await agent.submit(name, n=2)
                    message, answer = await model.turn()
                    assert done.task_id in message
                    digest = message.split("\n\n")[0]
                    # Both list the call still pending, and neither calls the
                    # result in hand unacknowledged (the server still counts it).
                    for text in (digest, answer):
                        assert text.startswith("Pending tool calls: 1 still queued or running.")
                        assert held.task_id in text
                        assert UNACKED not in text, text
                    gate.set()
                    message, answer = await model.turn()
                    assert held.task_id in message
                    assert UNACKED not in message and UNACKED not in answer, answer
                    assert answer == '{"pending": 0, "unacknowledged": 0}'

    try:
        run(scenario)
    finally:
        gate.set()


def digest(text: str, last_seq: int, acked_seq: int, pending: int = 0) -> PendingDigest:
    return PendingDigest([], last_seq, acked_seq, text, last_seq - acked_seq, pending)


def test_both_digests_word_waiting_and_silent_results_alike() -> None:
    """Mid-turn, seq 1 in the model's hands, seq 2 (WHEN_IDLE) queued behind the
    turn, seq 3 (SILENT) waiting for the user: the server counts three."""
    three = NO_CALLS + "3 results of earlier calls have arrived and have not yet been acknowledged."

    async def scenario() -> None:
        session = FakeSession(
            digests=[
                digest(
                    NO_CALLS + "1 result of earlier calls has arrived and has not yet "
                    "been acknowledged.\n",
                    1,
                    0,
                ),
                digest(three + "\n", 3, 0),
                digest(
                    NO_CALLS + "2 results of earlier calls have arrived and have not yet "
                    "been acknowledged.\n",
                    3,
                    1,
                ),
            ]
        )
        model, statuses = ScriptedModel(hold=True), Statuses()
        tool = pending_tool(session)
        async with AsyncAgent(model, session, on_status=statuses, batch_window=0):
            session.push(completion(1))
            first = await model.turn(1)
            assert first == "<server text for task1>", first  # nothing unshown: no digest
            session.push(completion(2))
            session.push(completion(3, DeliveryPolicy.SILENT))
            await statuses.until(lambda: statuses.count("queued") == 2)
            answer = await tool.call({})
            assert answer == (
                NO_CALLS + "1 result of earlier calls has arrived and has not yet been "
                "acknowledged. " + ONE_SILENT
            ), answer
            model.release()
            second = await model.turn(2)  # seq 2 now; seq 3 still waits for the user
            assert second == f"{NO_CALLS}{ONE_SILENT}\n\n<server text for task2>", second
            model.release()

    run(scenario)
