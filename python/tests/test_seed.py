"""The seed text's own program, with only its import line changed, against the real server.

The seed (../shared/seeds/) shows a decorator, a manager and an agent wrapper:

    from async_tool_manager import AsyncToolManager, async_tool
    manager = AsyncToolManager(max_workers=4)
    @async_tool(manager)
    def research_topic(topic: str) -> str: ...
    agent = AsyncAgent(my_agent, manager)

Here `from errand import ...` replaces the import, the server address comes
from $ERRAND_SERVER (as for any errand client), and the tools' sleeps are
shortened (2 s, 1 s and 0.3 s instead of the seed's 15 s) so that they finish
in the reverse order of their calls.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
import typing
from typing import Any

import pytest

from errand import (
    AsyncAgent,
    AsyncTaskResult,
    AsyncToolManager,
    Completion,
    SyncAgent,
    async_tool,
)

from .conftest import EVENT_TIMEOUT

ACK_BOUND_S = 0.050


class Statuses:
    """`on_status` events, for the test to await (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[str]]] = []
        self.queue: queue.Queue[tuple[str, list[str]]] = queue.Queue()
        self.queued = threading.Condition()

    def __call__(self, status: str, completions: list[Completion]) -> None:
        event = (status, [c.task_id for c in completions])
        with self.queued:
            self.events.append(event)
            self.queued.notify_all()
        self.queue.put(event)

    def wait_queued(self, count: int) -> bool:
        with self.queued:
            return self.queued.wait_for(
                lambda: sum(1 for s, _ in self.events if s == "queued") >= count, EVENT_TIMEOUT
            )

    def next(self) -> tuple[str, list[str]]:
        return self.queue.get(timeout=EVENT_TIMEOUT)


class SeedAgent:
    """The seed's agent protocol: a blocking `send(prompt)` and `is_idle()`.

    Its "model" calls the three tools on a research request, as a framework
    would when the model emits tool calls, and then stays in that turn until
    two results have been queued behind it.
    """

    def __init__(self, tools: list[Any], statuses: Statuses) -> None:
        self.tools = tools
        self.statuses = statuses
        self.inbox: queue.Queue[str] = queue.Queue()
        self.acks: list[str] = []
        self.ack_seconds: list[float] = []
        self._idle = True

    def is_idle(self) -> bool:
        return self._idle

    def send(self, prompt: str) -> str:
        self._idle = False
        try:
            self.inbox.put(prompt)
            if prompt.startswith("Research"):
                for tool in self.tools:
                    started = time.perf_counter()
                    ack = tool(topic="tides")
                    self.ack_seconds.append(time.perf_counter() - started)
                    self.acks.append(ack)
                assert self.statuses.wait_queued(2), "two results should queue behind this turn"
            return f"ok: {prompt[:40]}"
        finally:
            self._idle = True


def round_trip(manager: AsyncToolManager) -> float:
    """The median time of a bare unary call to the server from this process, in seconds."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        manager.client.list_tools()
        times.append(time.perf_counter() - started)
    return sorted(times)[2]


def task_id_of(ack: str) -> str:
    # The server's ack starts "Task <id> submitted: ...".
    assert ack.startswith("Task "), ack
    return ack.split()[1]


def test_the_seed_program_runs_with_only_its_import_changed(server: str) -> None:
    # -- the seed's code (sleeps shortened), import line changed ------------------
    manager = AsyncToolManager(max_workers=4)

    @async_tool(manager)
    def research_topic(topic: str) -> str:
        """Research a topic thoroughly and return detailed findings."""
        time.sleep(2)  # simulate slow API call
        return f"Findings about {topic}..."

    @async_tool(manager)
    def call_api(topic: str) -> str:
        """Call a slow API and return the result."""
        time.sleep(1)
        return f"API answer about {topic}"

    @async_tool(manager)
    def query_database(topic: str) -> str:
        """Query a database and return the result."""
        time.sleep(0.3)
        return f"rows about {topic}"

    # -- ------------------------------------------------------------------------
    assert manager.target == server  # from $ERRAND_SERVER: no server argument needed
    assert research_topic.__doc__ is not None
    assert research_topic.__doc__.startswith("Research a topic thoroughly")
    assert "asynchronous" in research_topic.__doc__  # the decorator's async notice
    assert query_database.run(topic="x") == "rows about x"  # type: ignore[attr-defined]
    # What frameworks read to build a tool: real types (this module uses
    # `from __future__ import annotations`), and a str answer, the ack.
    assert typing.get_type_hints(research_topic) == {"topic": str, "return": str}
    assert str(inspect.signature(research_topic)) == "(topic: str) -> str"

    results: list[AsyncTaskResult] = []
    all_done = threading.Event()

    def on_complete(result: AsyncTaskResult) -> None:
        results.append(result)
        if len(results) == 3:
            all_done.set()

    manager.add_done_callback(on_complete)
    statuses = Statuses()
    my_agent = SeedAgent([research_topic, call_api, query_database], statuses)
    agent = AsyncAgent(my_agent, manager, on_status=statuses)  # the seed's line
    try:
        # Blocking, as in the seed: no asyncio in this code.
        reply = agent.send("Research tides, please.")
        assert reply == "ok: Research tides, please."
        assert [task_id_of(a) for a in my_agent.acks]  # each call answered with its ack
        for ack, name in zip(my_agent.acks, ["research_topic", "call_api", "query_database"]):
            assert name in ack and "tides" in ack
        # The first call answers within 50 ms (or, on a machine so loaded that a bare
        # round trip to the server takes more than 10 ms, within 5 round trips);
        # none waits for its tool (2 s, 1 s, 0.3 s).
        bound = max(ACK_BOUND_S, 5 * round_trip(manager))
        assert my_agent.ack_seconds[0] < bound, (my_agent.ack_seconds, bound)
        assert max(my_agent.ack_seconds) < 0.3, my_agent.ack_seconds
        research, api, query = (task_id_of(a) for a in my_agent.acks)

        # The 0.3 s and 1 s results queued behind the busy turn, in completion order.
        assert statuses.next() == ("queued", [query])
        assert statuses.next() == ("queued", [api])
        # ... and drained as one message right after it.
        assert statuses.next() == ("draining", [query, api])
        assert statuses.next() == ("delivered", [query, api])
        assert my_agent.inbox.get(timeout=EVENT_TIMEOUT) == "Research tides, please."
        batch = my_agent.inbox.get(timeout=EVENT_TIMEOUT)
        assert batch.index(query) < batch.index(api)
        assert "rows about tides" in batch and "API answer about tides" in batch

        # The 2 s result finds the agent idle: delivered at once, never queued.
        assert statuses.next() == ("delivered", [research])
        last = my_agent.inbox.get(timeout=EVENT_TIMEOUT)
        assert research in last and "Findings about tides..." in last

        # The manager's completion callbacks: the seed's AsyncTaskResult.
        assert all_done.wait(EVENT_TIMEOUT)
        assert [r.task_id for r in results] == [query, api, research]
        by_tool = {r.tool_name: r for r in results}
        assert by_tool["research_topic"].result == "Findings about tides..."
        assert by_tool["research_topic"].arguments == {"topic": "tides"}
        assert all(r.error is None and r.ok for r in results)
        assert by_tool["query_database"].elapsed >= 0.3
        assert by_tool["call_api"].elapsed >= 1.0
        assert by_tool["research_topic"].elapsed >= 2.0
        assert [c.task_id for c in agent.delivered] == [query, api, research]
        assert agent.pending == [] and agent.queue == []
    finally:
        agent.close()
        manager.stop()


def test_a_first_call_before_any_agent_starts_the_manager(server: str) -> None:
    manager = AsyncToolManager(max_workers=2)
    seen: queue.Queue[AsyncTaskResult] = queue.Queue()
    manager.add_done_callback(seen.put)
    gate = threading.Event()

    @async_tool(manager)
    def slow_echo(text: str) -> str:
        """Echo the text, when the test lets it."""
        gate.wait(EVENT_TIMEOUT)
        return text

    try:
        started = time.perf_counter()
        ack = slow_echo("hi")  # connects, registers, submits: still no wait for the tool
        cold = time.perf_counter() - started
        started = time.perf_counter()
        ack2 = slow_echo(text="again")
        warm = time.perf_counter() - started
        assert isinstance(ack, str) and "slow_echo" in ack
        assert warm < ACK_BOUND_S, warm
        assert cold < 2.0, cold
        # The seed's manager.submit(tool_name, fn, **kwargs) returns a task ID.
        task_id = manager.submit("slow_echo", slow_echo, text="third")
        assert manager.get_task(task_id).task_id == task_id
        gate.set()
        got = {seen.get(timeout=EVENT_TIMEOUT).task_id for _ in range(3)}
        assert got == {task_id_of(ack), task_id_of(ack2), task_id}
        assert manager.result(task_id, timeout=EVENT_TIMEOUT) == "third"
    finally:
        manager.stop()


def test_a_tool_decorated_after_the_manager_started_is_served_too(server: str) -> None:
    # The seed's manager runs any function at any time. errand's refused a
    # tool decorated (or first given to submit) once the manager had started:
    # its worker registered its tools once. Now a later Register adds it on
    # the live stream, and a call already running goes on.
    manager = AsyncToolManager(max_workers=2)
    release = threading.Event()

    @async_tool(manager)
    def first(x: int) -> int:
        release.wait(EVENT_TIMEOUT)
        return x

    manager.start()
    try:
        running = first.submit(x=1).task_id

        @async_tool(manager)
        def late(x: int) -> int:
            return 10 * x

        assert manager.result(late.submit(x=2).task_id, timeout=EVENT_TIMEOUT) == 20
        # The seed's submit(tool_name, fn) with a name new to the manager.
        task_id = manager.submit("triple", lambda x: 3 * x, x=3)
        assert manager.result(task_id, timeout=EVENT_TIMEOUT) == 9
        release.set()
        assert manager.result(running, timeout=EVENT_TIMEOUT) == 1
        assert manager.get_task(running).attempts == 1  # not run again
        assert set(manager.tools) == {"first", "late", "triple"}
    finally:
        release.set()
        manager.stop()


def test_sync_agent_on_a_manager(server: str) -> None:
    manager = AsyncToolManager(max_workers=2)

    @async_tool(manager)
    def double(n: int) -> int:
        """Double n."""
        return 2 * n

    class Agent:
        def __init__(self) -> None:
            self.inbox: queue.Queue[str] = queue.Queue()

        def send(self, prompt: str) -> str:
            self.inbox.put(prompt)
            if prompt == "go":
                return double(n=21)  # the tool call answers with its ack at once
            return "noted"

    agent = Agent()
    sync_agent = SyncAgent(agent, manager)
    try:
        ack = sync_agent.send("go")
        assert isinstance(ack, str) and ack.startswith("Task ")
        assert agent.inbox.get(timeout=EVENT_TIMEOUT) == "go"
        result = agent.inbox.get(timeout=EVENT_TIMEOUT)
        assert task_id_of(ack) in result and "42" in result
    finally:
        sync_agent.close()
        manager.stop()


def test_the_seeds_submit_serves_fn_as_the_tool_name_it_is_given(server: str) -> None:
    # The seed's `manager.submit(tool_name, fn, **kwargs)` runs `fn` under the
    # name given, whatever fn is called (a lambda included); errand served it
    # under fn.__name__, so the call named `tool_name` found no tool.
    manager = AsyncToolManager(max_workers=2)
    seen: queue.Queue[AsyncTaskResult] = queue.Queue()
    manager.add_done_callback(seen.put)

    def slow_lookup(key: str) -> str:
        return f"value of {key}"

    try:
        manager.add_tool(slow_lookup)  # the name it has: not taken by "lookup"
        task_id = manager.submit("lookup", slow_lookup, key="a")
        assert manager.result(task_id, timeout=EVENT_TIMEOUT) == "value of a"
        done = seen.get(timeout=EVENT_TIMEOUT)
        assert (done.task_id, done.tool_name) == (task_id, "lookup")
        assert set(manager.tools) == {"slow_lookup", "lookup"}
        again = manager.submit("lookup", slow_lookup, key="b")  # the same function: served
        assert manager.result(again, timeout=EVENT_TIMEOUT) == "value of b"
        # Another function under a name already served would silently run the
        # first one: refused.
        with pytest.raises(ValueError, match="'lookup' is served by another function"):
            manager.submit("lookup", lambda key: key, key="c")
    finally:
        manager.stop()

    other = AsyncToolManager(max_workers=2)
    try:
        task_id = other.submit("double", lambda n: 2 * n, n=4)
        assert other.result(task_id, timeout=EVENT_TIMEOUT) == 8
        assert set(other.tools) == {"double"}
    finally:
        other.stop()
