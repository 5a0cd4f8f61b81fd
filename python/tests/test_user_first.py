"""AsyncAgent puts its user first: a busy stream of results never holds the user's message back.

The scripted model below keeps the stream busy by construction: during each
delivery turn it lets one more tool call finish and stays in the turn until
that result has been queued, so at every turn boundary a result is waiting.
Without the user-first rule every boundary would go to the results and the
user would wait for ever.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Optional

import pytest

from errand import AsyncAgent, AsyncClient, Completion, Worker

from .conftest import EVENT_TIMEOUT, unique
from .test_agent import Gates

USER = "What is the capital of France?"
THINK_S = 0.2  # the scripted model's time per turn (its work, not a wait for an event)


class BusyModel:
    """Each delivery turn releases the next tool call and waits until its result is queued."""

    def __init__(self, gates: Gates, keys: list[str]) -> None:
        self.gates = gates
        self.keys = keys
        self.turns: list[tuple[float, str]] = []  # (start time, message)
        self.queued = asyncio.Event()
        self.user_turn_started = asyncio.Event()
        self.delivery_turn = asyncio.Event()  # set at the start of each delivery turn

    async def send(self, message: str) -> str:
        self.turns.append((time.perf_counter(), message))
        if message.startswith(USER):
            self.user_turn_started.set()
            await asyncio.sleep(THINK_S)
            return "Paris."
        self.delivery_turn.set()
        if self.keys:
            self.queued.clear()
            self.gates.open(self.keys.pop(0))
            await asyncio.wait_for(self.queued.wait(), EVENT_TIMEOUT)
        await asyncio.sleep(THINK_S)
        return "noted"


@pytest.mark.parametrize("with_user", [True, False], ids=["results-with-user", "results-after"])
def test_the_user_message_takes_the_next_turn_through_a_busy_stream(
    server: str, start_worker: Callable[..., Worker], with_user: bool
) -> None:
    gates = Gates()
    start_worker(gates.tool, max_concurrency=16)
    keys = [f"k{i}" for i in range(12)]

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            model = BusyModel(gates, keys[1:])

            def on_status(status: str, completions: list[Completion]) -> None:
                if status == "queued":
                    model.queued.set()

            # digest=False: the model finds the user's turn by its first words; the
            # digest of the pending calls would lead them (tests/test_model_sees.py).
            async with AsyncAgent(
                model, client, on_status=on_status, results_with_user=with_user, digest=False
            ) as agent:
                for k in keys:
                    await agent.submit(gates.name, key=k)
                gates.open(keys[0])  # the first result starts the chain
                # Let a few delivery turns go by, then speak up in the middle of one.
                for _ in range(3):
                    model.delivery_turn.clear()
                    await asyncio.wait_for(model.delivery_turn.wait(), EVENT_TIMEOUT)
                turn_at_send = len(model.turns)
                sent = time.perf_counter()
                reply_task = asyncio.ensure_future(agent.send(USER))
                await asyncio.wait_for(model.user_turn_started.wait(), EVENT_TIMEOUT)
                reached = time.perf_counter()
                reply: Optional[Any] = await asyncio.wait_for(reply_task, EVENT_TIMEOUT)
                returned = time.perf_counter()
                turns_when_returned = len(model.turns)

                user_turn = next(i for i, (_, m) in enumerate(model.turns) if m.startswith(USER))
                # The user's message took the very next turn boundary: at most the
                # delivery turn that was running when it was sent went first.
                assert user_turn == turn_at_send, (user_turn, turn_at_send)
                assert reply == "Paris."
                # send() returned when its own turn ended, at most one turn later.
                assert turns_when_returned <= user_turn + 2
                message = model.turns[user_turn][1]
                if with_user:
                    # The result waiting at that boundary rode along, after the user's text.
                    assert message.startswith(USER + "\n\n") and "Async result for task" in message
                    history = [{"role": "user", "content": m} for _, m in model.turns]
                    pruned = agent.prune(history)
                    assert {"role": "user", "content": USER} in pruned
                else:
                    assert message == USER
                    after = model.turns[user_turn + 1][1]
                    assert "Async result for task" in after
                latency, total = reached - sent, returned - sent
                print(
                    f"\n[{'with' if with_user else 'after'}] user message reached the model "
                    f"{latency * 1000:.0f} ms after send(); send() returned after "
                    f"{total * 1000:.0f} ms (model turn {THINK_S * 1000:.0f} ms)"
                )
                # The bounds are in turns (asserted above), not in seconds, so that a
                # loaded machine cannot fail them; the times are printed (pytest -s).
                for k in keys:
                    gates.open(k)

    asyncio.run(scenario())
