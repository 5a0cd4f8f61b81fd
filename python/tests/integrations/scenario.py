"""The story every framework adapter test tells, against a real server and worker.

1. The user asks for research; the scripted model calls three errand tools at
   once (two through a local `@async_tool` function, one by its registered
   name). Each call returns errand's ack while every tool still waits on a
   gate the test holds shut: the turn ends, the tools are still running.
2. The user asks something else; the model answers at once (the tools still run).
3. The test opens the gates in the order c, a, b; each result reaches the
   model as a user message naming its task ID, in that order.

Each framework test supplies a fake model of that framework which records what
it was shown (`ModelLog`) and answers by `decide`, and a conversation object
(the adapter's) for `AsyncAgent` to drive.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from errand import AsyncAgent, AsyncClient, AsyncToolManager, Completion, Task, async_tool
from errand.tool import tool_def

from ..conftest import EVENT_TIMEOUT, unique

RESEARCH_PROMPT = "Research tides and moons for me, and look up c."
QUESTION = "Meanwhile: what is the capital of France?"
STARTED = "I started the research; the results will follow."
ACK = re.compile(r"Task (\S+) submitted")


class Gates:
    """Two tools (`research`, `lookup`) whose calls each wait for the test to open their gate.

    With a manager they are the seed's `@async_tool(manager)` functions (calling
    one submits it), else bare `@async_tool` ones for a `Worker`.
    """

    def __init__(self, manager: Optional[AsyncToolManager] = None) -> None:
        self._gates: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self._lock = threading.Lock()
        gate = self._wait

        @async_tool(manager, name=unique("research"))
        def research(topic: str) -> str:
            """Research a topic thoroughly and return detailed findings."""
            gate(topic)
            return f"done {topic}"

        @async_tool(manager, name=unique("lookup"))
        def lookup(key: str) -> str:
            """Look a key up in a slow database."""
            gate(key)
            return f"done {key}"

        self.research = research
        self.lookup = lookup
        self.research_name = tool_def(research).name
        self.lookup_name = tool_def(lookup).name

    def _wait(self, key: str) -> None:
        with self._lock:
            gate = self._gates[key]
        if not gate.wait(EVENT_TIMEOUT):
            raise TimeoutError(f"gate {key} never opened")

    def open(self, key: str) -> None:
        with self._lock:
            self._gates[key].set()

    def open_all(self) -> None:
        for key in "abc":
            self.open(key)

    def tools(self) -> list[Union[Callable[..., Any], str]]:
        """What the adapters get: the local function, and the other tool by name."""
        return [self.research, self.lookup_name]


@dataclass(frozen=True)
class Call:
    """A tool call the fake model makes."""

    tool: str
    arguments: dict[str, Any]
    call_id: str


@dataclass
class ModelLog:
    """What a fake model was shown and said.

    `calls` holds, per model call, the conversation as (kind, text) pairs, kind
    being "user" (a user text), "tool" (a tool result) or "assistant";
    `replies` the texts the model answered with.
    """

    gates: Gates
    calls: list[list[tuple[str, str]]] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    def texts(self, kind: str) -> list[str]:
        """Texts of one kind in the latest call's conversation (the whole history)."""
        return [text for k, text in (self.calls[-1] if self.calls else []) if k == kind]

    def respond(self, view: Sequence[tuple[str, str]]) -> Union[list[Call], str]:
        """Record what the model is shown and script its answer: tool calls for
        the research request, else a text."""
        self.calls.append(list(view))
        answer = self._decide(view)
        if isinstance(answer, str):
            self.replies.append(answer)
        return answer

    def _decide(self, view: Sequence[tuple[str, str]]) -> Union[list[Call], str]:
        kind, text = view[-1] if view else ("user", "")
        if kind == "tool":
            return STARTED
        if "Research" in text:
            g = self.gates
            return [
                Call(g.research_name, {"topic": "a"}, "call_a"),
                Call(g.research_name, {"topic": "b"}, "call_b"),
                Call(g.lookup_name, {"key": "c"}, "call_c"),
            ]
        if "capital of France" in text:
            return "Paris."
        found = re.findall(r"Async result for task (\S+)", text)
        if found:
            return "Noted the result of task " + ", ".join(found) + "."
        return "OK."


class Statuses:
    """`on_status` of the AsyncAgent: lets the test await each delivery."""

    def __init__(self) -> None:
        self.delivered: asyncio.Queue[list[str]] = asyncio.Queue()

    def __call__(self, status: str, completions: Sequence[Completion]) -> None:
        if status == "delivered":
            self.delivered.put_nowait([c.task_id for c in completions])

    async def until_delivered(self, task_id: str) -> None:
        while True:
            ids = await asyncio.wait_for(self.delivered.get(), EVENT_TIMEOUT)
            if task_id in ids:
                return


Source = Union[AsyncClient, AsyncToolManager]


async def get_task(source: Source, task_id: str) -> Task:
    if isinstance(source, AsyncToolManager):
        return await asyncio.to_thread(source.get_task, task_id)
    return await source.get_task(task_id)


async def run(source: Source, conversation: Any, log: ModelLog) -> None:
    """Drive one conversation through the story above and check what the model saw.

    `source` is what the `AsyncAgent` follows: an `AsyncClient` on the tools'
    session, or the seed's `AsyncToolManager`.
    """
    statuses = Statuses()
    # digest=False: the story checks the user's words exactly; the pending
    # digest that would lead them is tested in tests/test_model_sees.py.
    async with AsyncAgent(conversation, source, on_status=statuses, digest=False) as agent:
        # 1. Three tool calls; the turn ends with every tool still held at its gate.
        reply = await asyncio.wait_for(agent.send(RESEARCH_PROMPT), EVENT_TIMEOUT)
        assert STARTED in str(reply), reply
        acks = log.texts("tool")
        assert len(acks) == 3, acks
        task_ids = []
        for ack in acks:
            match = ACK.search(ack)
            assert match, f"not errand's ack: {ack!r}"
            task_ids.append(match.group(1))
        by_key: dict[str, str] = {}
        for task_id in task_ids:
            task = await get_task(source, task_id)
            assert not task.status.finished, task  # the ack came back while it runs
            assert task.session_id == source.session_id
            by_key[next(iter(task.arguments.values()))] = task_id
        assert sorted(by_key) == ["a", "b", "c"]
        tools = {(await get_task(source, t)).tool for t in task_ids}
        assert tools == {log.gates.research_name, log.gates.lookup_name}

        # 2. The user is answered while the tools run.
        reply = await asyncio.wait_for(agent.send(QUESTION), EVENT_TIMEOUT)
        assert "Paris" in str(reply), reply
        for task_id in task_ids:
            assert not (await get_task(source, task_id)).status.finished

        # 3. Results out of order: each reaches the model with its task ID.
        order = ["c", "a", "b"]
        for key in order:
            log.gates.open(key)
            await statuses.until_delivered(by_key[key])
        users = log.texts("user")
        results = [text for text in users if "Async result for task" in text]
        assert len(results) == 3, users
        for text, key in zip(results, order):
            assert by_key[key] in text, (key, text)
            assert f"done {key}" in text, (key, text)
        # The user's own messages came first, in order, and each result was answered.
        assert users.index(QUESTION) < users.index(results[0])
        assert users[0] == RESEARCH_PROMPT
        for key in order:
            noted = f"Noted the result of task {by_key[key]}"
            assert any(noted in reply for reply in log.replies), log.replies
