"""A queue timeout from Python: `queue_timeout_ms` on a submit and on a tool.

Milliseconds counted from the submit: a call that no worker has taken by
then completes TIMED_OUT with error code "queue_timeout". 0 (the default)
leaves it to the tool's, then to the server's --default-queue-timeout-ms.
It is spelled as the run timeout is (`timeout_ms`), and it is an option of
the call, never one of the tool's arguments.

Each test keeps its one worker busy (a call waiting on a gate) so that the
next call waits in the queue.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import pytest

from errand import (
    AsyncAgent,
    AsyncClient,
    AsyncToolManager,
    Client,
    InvalidArgument,
    SyncAgent,
    TaskFailed,
    TaskStatus,
    Worker,
    async_tool,
)
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, unique


class Busy:
    """A tool on a worker of one slot, and a call that holds the slot."""

    def __init__(self, start_worker: Callable[..., Worker], **options: Any) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

        @async_tool(name=unique("slow"), **options)
        def slow(hold: bool = False, **kwargs: Any) -> dict[str, Any]:
            """Hold the worker while asked to; echo the arguments."""
            if hold:
                self.started.set()
                self.gate.wait(EVENT_TIMEOUT)
            return kwargs

        self.tool = slow
        self.name = tool_def(slow).name
        start_worker(slow, max_concurrency=1)

    def hold(self, client: Client) -> str:
        task = client.submit(self.name, hold=True).task_id
        assert self.started.wait(EVENT_TIMEOUT), "the holding call never started"
        return task


def assert_queue_timed_out(client: Client, task_id: str) -> None:
    with pytest.raises(TaskFailed) as failed:
        client.result(task_id, timeout=EVENT_TIMEOUT)
    assert failed.value.status == "TIMED_OUT" and failed.value.code == "queue_timeout"


def test_a_submit_sets_the_queue_timeout_not_an_argument(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    busy = Busy(start_worker)
    try:
        busy.hold(client)
        ack = client.submit(busy.name, x=1, queue_timeout_ms=300)
        assert ack.task.arguments == {"x": 1}  # not sent as a tool argument
        assert_queue_timed_out(client, ack.task_id)
    finally:
        busy.gate.set()


def test_the_async_client_sets_it_too(server: str, start_worker: Callable[..., Worker]) -> None:
    busy = Busy(start_worker)
    session = unique("session")
    with Client(server, session_id=session) as client:
        try:
            busy.hold(client)

            async def submit() -> str:
                async with AsyncClient(server, session_id=session) as aclient:
                    ack = await aclient.submit(busy.name, {"x": 2}, queue_timeout_ms=300)
                    assert ack.task.arguments == {"x": 2}
                    return ack.task_id

            assert_queue_timed_out(client, asyncio.run(submit()))
        finally:
            busy.gate.set()


def test_a_tool_registers_its_queue_timeout(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    busy = Busy(start_worker, queue_timeout_ms=300, timeout_ms=60_000)
    info = next(t for t in client.list_tools() if t.name == busy.name)
    assert (info.queue_timeout_ms, info.timeout_ms) == (300, 60_000)
    try:
        busy.hold(client)
        # A submit's own option wins over the tool's: `own` is still queued
        # when `default`, submitted after it, has timed out by the tool's.
        own = client.submit(busy.name, x=4, queue_timeout_ms=EVENT_TIMEOUT_MS)
        default = client.submit(busy.name, x=3)
        assert_queue_timed_out(client, default.task_id)
        assert client.get_task(own.task_id).status == TaskStatus.QUEUED
        busy.gate.set()
        assert client.result(own.task_id, timeout=EVENT_TIMEOUT) == {"x": 4}
    finally:
        busy.gate.set()


EVENT_TIMEOUT_MS = int(EVENT_TIMEOUT * 1000)


def test_agents_and_the_manager_take_it_as_a_submit_option(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    busy = Busy(start_worker)
    session = unique("session")

    class Model:
        async def send(self, message: str) -> str:
            return "ok"

    with Client(server, session_id=session) as client:
        try:
            busy.hold(client)
            sync = SyncAgent(Model(), client, digest=False, ack=False)
            try:
                ack = sync.submit(busy.name, x=5, queue_timeout_ms=300)
            finally:
                sync.close()
            assert ack.task.arguments == {"x": 5}
            assert_queue_timed_out(client, ack.task_id)

            manager = AsyncToolManager(max_workers=1, session_id=session, ack=False)
            agent = AsyncAgent(Model(), manager, digest=False)
            try:
                ack = agent.submit(busy.name, x=6, queue_timeout_ms=300)
                assert ack.task.arguments == {"x": 6}
                assert_queue_timed_out(client, ack.task_id)
                ack = manager.submit_call(busy.name, {"x": 7}, queue_timeout_ms=300)
                assert ack.task.arguments == {"x": 7}
                assert_queue_timed_out(client, ack.task_id)
            finally:
                agent.close()
                manager.stop()
        finally:
            busy.gate.set()


def test_a_negative_queue_timeout_is_refused_before_any_call() -> None:
    with Client("127.0.0.1:1") as client, pytest.raises(InvalidArgument, match="queue_timeout_ms"):
        client.submit("anything", queue_timeout_ms=-1)
    with pytest.raises(ValueError, match="queue_timeout_ms"):

        @async_tool(queue_timeout_ms=-1)
        def t(x: int) -> int:
            return x


def test_a_manager_tool_carries_its_queue_timeout() -> None:
    manager = AsyncToolManager(max_workers=1, server="127.0.0.1:1")

    @async_tool(manager, queue_timeout_ms=1500)
    def waits(x: int) -> int:
        return x

    assert waits.tool_info.queue_timeout_ms == 1500  # type: ignore[attr-defined]
    assert tool_def(waits.run).queue_timeout_ms == 1500  # type: ignore[attr-defined]
