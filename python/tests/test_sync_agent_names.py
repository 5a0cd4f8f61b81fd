"""SyncAgent has AsyncAgent's names (the seed's included), as plain calls."""

from __future__ import annotations

import inspect
import queue
import threading
from typing import Any, Callable

from errand import AsyncAgent, Client, Progress, SyncAgent, Worker, async_tool

from .conftest import EVENT_TIMEOUT, unique

NAMES = (
    "state",
    "last_seq",
    "busy",
    "drain_queue",
    "is_idle",
    "on_completion",
    "on_progress",
    "on_result",
    "queue",
    "start",
)


def test_sync_agent_has_the_async_agents_names_as_plain_calls() -> None:
    for name in NAMES:
        assert hasattr(AsyncAgent, name), name
        assert hasattr(SyncAgent, name), f"SyncAgent lacks {name}"
        member = inspect.getattr_static(SyncAgent, name)
        if callable(member):
            assert not inspect.iscoroutinefunction(member), name


def test_sync_agent_names_work(server: str, start_worker: Callable[..., Worker]) -> None:
    @async_tool(name=unique("echo"))
    def echo(text: str) -> str:
        return text

    start_worker(echo)
    turns: queue.Queue[str] = queue.Queue()
    statuses: queue.Queue[tuple[str, list[Any]]] = queue.Queue()
    idle = threading.Event()
    idle.set()

    class Blocking:
        def is_idle(self) -> bool:
            return idle.is_set()

        def send(self, message: str) -> str:
            turns.put(message)
            return "ok"

    def on_status(status: str, items: list[Any]) -> None:
        statuses.put((status, list(items)))

    with Client(server, session_id=unique("session")) as client:
        agent = SyncAgent(Blocking(), client, on_status=on_status, batch_window=0)
        try:
            assert agent.start() is agent  # started already: a no-op
            assert (agent.state, agent.busy, agent.is_idle()) == ("idle", False, True)
            assert agent.queue == [] and agent.last_seq == 0

            idle.clear()  # busy outside send: results queue
            task = client.submit(tool_name(echo), text="hi").task_id
            while True:
                status, items = statuses.get(timeout=EVENT_TIMEOUT)
                if status == "queued":
                    break
            assert agent.state == "queued" and not agent.is_idle()
            assert [c.task_id for c in agent.queue] == [task]
            assert agent.last_seq >= 1
            idle.set()
            assert agent.drain_queue() is None
            assert task in turns.get(timeout=EVENT_TIMEOUT)
            assert agent.queue == [] and agent.state == "idle"

            progress = Progress(task, "echo", 1, 1.0, 2.0, "half", "", 5, client.session_id)
            assert agent.on_progress(progress) is None
            while True:
                status, items = statuses.get(timeout=EVENT_TIMEOUT)
                if status == "progress":
                    assert items == [progress]
                    break

            # A completion handed in by hand (as the seed's callback would):
            # delivered at once, the agent being idle.
            completion = agent.delivered[-1]
            assert agent.on_completion(completion) is None
            assert task in turns.get(timeout=EVENT_TIMEOUT)
            assert agent.on_result(completion) is None
            assert task in turns.get(timeout=EVENT_TIMEOUT)
        finally:
            agent.close()


def tool_name(fn: Callable[..., object]) -> str:
    from errand.tool import tool_def

    return tool_def(fn).name
