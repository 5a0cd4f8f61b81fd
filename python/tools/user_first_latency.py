#!/usr/bin/env python3
"""Measure how long a user's message waits behind a busy stream of results.

The scenario of issue 14: results arrive every 0.5 s, each model turn takes
1 s, and the user speaks up in the middle. Prints how long the message took
to reach the model and how long `send()` took, for both placements of the
results that arrived meanwhile (with the user's message, and right after it).

    errand serve --listen 127.0.0.1:7466 --store memory &
    python/.venv/bin/python python/tools/user_first_latency.py [HOST:PORT]
"""

from __future__ import annotations

import asyncio
import sys
import time

from errand import AsyncAgent, AsyncClient, Worker, async_tool

TURN_S = 1.0
EVERY_S = 0.5


@async_tool(name="ticker")
def ticker(n: int) -> int:
    """Finish after n * EVERY_S seconds."""
    time.sleep(EVERY_S * n)
    return n


class Model:
    """A stand-in model whose every turn takes TURN_S."""

    def __init__(self) -> None:
        self.turns: list[tuple[float, str]] = []

    async def send(self, message: str) -> str:
        self.turns.append((time.perf_counter(), message))
        await asyncio.sleep(TURN_S)
        return "ok"


async def measure(target: str, with_user: bool) -> None:
    async with AsyncClient(target) as client:
        model = Model()
        async with AsyncAgent(model, client, results_with_user=with_user) as agent:
            for n in range(1, 17):
                await agent.submit("ticker", n=n)
            await asyncio.sleep(3.3)  # into the busy stream, mid-turn
            sent = time.perf_counter()
            await agent.send("What is the capital of France?")
            returned = time.perf_counter()
            reached = next(t for t, m in model.turns if m.startswith("What is"))
            ahead = sum(1 for t, _ in model.turns if sent <= t < reached)
            print(
                f"results_with_user={with_user}: the user's message reached the model after "
                f"{reached - sent:.2f} s ({ahead} turns started ahead of it); send() returned "
                f"after {returned - sent:.2f} s (turns of {TURN_S:.1f} s, results every "
                f"{EVERY_S:.1f} s)"
            )


async def both(target: str) -> None:
    for with_user in (True, False):
        await measure(target, with_user)


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7466"
    worker = Worker(target, tools=[ticker], max_concurrency=16).start()
    try:
        asyncio.run(both(target))
    finally:
        worker.stop()


if __name__ == "__main__":
    main()
