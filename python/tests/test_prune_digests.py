"""`AsyncAgent.prune` takes out the digests that no longer hold.

Each turn's message starts with the session's pending digest (up to 4 KiB):
what was pending, and how many results were unseen, at that turn. Only the
latest digest is true; the older ones stayed in a history for ever, so a
history pruned with `prune(keep_results=N)` grew every turn although its
results were stubbed. `prune` now removes every digest the agent prepended
but the one of its latest turn (all of them when that turn had none), in both
of its modes; the rest of each message stays.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from errand import AsyncAgent, AsyncClient, Worker, async_tool
from errand.history import DIGEST_STUB
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, unique
from .fakes import FakeSession, Statuses, completion


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 4 * EVENT_TIMEOUT))


class Chat:
    """The README's `Chat`: it keeps the history; the llm answers at once."""

    def __init__(self) -> None:
        self.history: list[Any] = []
        self.turns = 0
        self._turned = asyncio.Event()

    async def send(self, message: str) -> str:
        self.history.append({"role": "user", "content": message})
        self.history.append({"role": "assistant", "content": f"reply {self.turns}"})
        self.turns += 1
        self._turned.set()
        return "reply"

    async def until(self, turns: int) -> None:
        async def wait() -> None:
            while self.turns < turns:
                self._turned.clear()
                await self._turned.wait()

        await asyncio.wait_for(wait(), EVENT_TIMEOUT)

    def user(self) -> list[str]:
        return [m["content"] for m in self.history if m["role"] == "user"]


D1 = "Pending tool calls: 2 still queued or running. <first>"
D2 = "Pending tool calls: 1 still queued or running. <second>"
D3 = "Pending tool calls: 1 still queued or running. <third>"


def test_only_the_latest_digest_stays_in_either_mode() -> None:
    async def scenario() -> None:
        session, chat, statuses = FakeSession(digests=[D1, D2, D3, ""]), Chat(), Statuses()
        async with AsyncAgent(chat, session, on_status=statuses, batch_window=0) as agent:
            await agent.send("first")
            session.push(completion(1))
            await chat.until(2)
            await agent.send("second")
            assert chat.user() == [
                f"{D1}\n\nfirst",
                f"{D2}\n\n<server text for task1>",
                f"{D3}\n\nsecond",
            ]
            # Others' messages are not the agent's digests, whatever they say.
            history = [*chat.history, {"role": "tool", "content": D1}, "assistant: " + D2]
            stubbed = agent.prune(history, keep_results=0)
            assert [m["content"] for m in stubbed[:6:2]] == [
                "first",
                "[result of task task1 (search) pruned]",
                f"{D3}\n\nsecond",
            ]
            assert stubbed[1::2][:3] == history[1:6:2]  # the replies stay
            assert stubbed[6:] == history[6:]
            kept = agent.prune(history, keep_results=1)
            assert kept[2]["content"] == "<server text for task1>"
            assert kept[0]["content"] == "first" and kept[4]["content"] == f"{D3}\n\nsecond"
            # Without keep_results the result's message goes; the digest with it.
            dropped = agent.prune(history)
            assert [m["content"] for m in dropped[:5]] == [
                "first",
                "reply 0",
                "reply 1",
                f"{D3}\n\nsecond",
                "reply 2",
            ]
            assert history[0]["content"] == f"{D1}\n\nfirst"  # the input is not changed
            # A turn without a digest (nothing to say): none of the earlier ones holds.
            await agent.send("third")
            assert chat.user()[-1] == "third"
            pruned = agent.prune(chat.history, keep_results=1)
            assert [m["content"] for m in pruned[::2]] == [
                "first",
                "<server text for task1>",
                "second",
                "third",
            ]

    run(scenario)


def test_identical_digests_keep_the_last_one_and_a_bare_digest_becomes_a_stub() -> None:
    async def scenario() -> None:
        session, chat = FakeSession(digests=[D1, D1, D1]), Chat()
        async with AsyncAgent(chat, session, batch_window=0) as agent:
            await agent.send("")  # the message is the digest alone
            await agent.send("a")
            await agent.send("b")
            assert chat.user() == [D1, f"{D1}\n\na", f"{D1}\n\nb"]
            for pruned in (agent.prune(chat.history, keep_results=0), agent.prune(chat.history)):
                users = [m["content"] for m in pruned if m["role"] == "user"]
                assert users == [DIGEST_STUB, "a", f"{D1}\n\nb"], users
            # Content blocks (Anthropic, Bedrock) are pruned alike.
            blocks = [
                {"role": "user", "content": [{"type": "text", "text": m["content"]}]}
                for m in chat.history
                if m["role"] == "user"
            ]
            pruned = agent.prune(blocks, keep_results=0)
            assert [m["content"][0]["text"] for m in pruned] == [DIGEST_STUB, "a", f"{D1}\n\nb"]

    run(scenario)


def test_a_history_pruned_each_turn_keeps_one_digest(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    """The README's loop against a server: the history holds one digest at a time."""
    gates = {k: threading.Event() for k in "ab"}

    @async_tool(name=unique("research"))
    def research(key: str) -> str:
        gates[key].wait(EVENT_TIMEOUT)
        return f"done {key}"

    start_worker(research, max_concurrency=4)
    name = tool_def(research).name

    def digests(history: list[Any]) -> list[int]:
        return [i for i, m in enumerate(history) if "Pending tool calls:" in m["content"]]

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            chat, statuses = Chat(), Statuses()
            async with AsyncAgent(chat, client, on_status=statuses, batch_window=0) as agent:
                a = await agent.submit(name, key="a")
                b = await agent.submit(name, key="b")
                await agent.send("What have you found so far?")
                gates["a"].set()
                await chat.until(2)
                assert a.task_id in chat.history[2]["content"]
                await agent.send("And now?")
                assert len(digests(chat.history)) == 3
                chat.history = agent.prune(chat.history, keep_results=1)
                assert digests(chat.history) == [4], chat.history  # the latest, "And now?"
                assert b.task_id in chat.history[4]["content"]
                assert chat.history[0]["content"] == "What have you found so far?"
                gates["b"].set()
                await statuses.until(lambda: statuses.count("delivered") == 2)
                assert b.task_id in chat.history[-2]["content"]
                chat.history = agent.prune(chat.history, keep_results=1)
                assert digests(chat.history) == [], chat.history  # nothing is pending now
                assert chat.history[4]["content"] == "And now?"

    try:
        run(scenario)
    finally:
        for gate in gates.values():
            gate.set()
