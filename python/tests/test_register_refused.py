"""A later Register the server refuses (RegisterRefused): the tool added fails
with the server's status as an errand exception, and the worker goes on
serving its other tools and its running calls."""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from errand import (
    AsyncToolManager,
    Client,
    FailedPrecondition,
    InvalidArgument,
    TaskStatus,
    Worker,
    async_tool,
)

from .conftest import EVENT_TIMEOUT, unique


def test_a_refused_add_tool_raises_and_the_worker_goes_on(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    release = threading.Event()
    started = threading.Event()
    slow_name, shared_name = unique("slow"), unique("shared")

    @async_tool(name=slow_name)
    def slow(x: int) -> int:
        started.set()
        release.wait(EVENT_TIMEOUT)
        return x

    @async_tool(name=shared_name)
    def shared(text: str) -> str:
        return text

    @async_tool(name=shared_name)
    def clash(text: int) -> str:  # the same name, another definition
        return "clash"

    @async_tool(name=unique("greedy"), result_budget_bytes=10**9)
    def greedy(x: int) -> int:  # a budget over the server's limit
        return x

    start_worker(shared)
    worker = start_worker(slow)
    try:
        running = client.submit(slow_name, x=7).task_id
        assert started.wait(EVENT_TIMEOUT)

        with pytest.raises(FailedPrecondition) as refused:
            worker.add_tool(clash)
        assert shared_name in refused.value.message
        assert shared_name not in worker.tools  # not registered: not sent again on reconnect

        with pytest.raises(InvalidArgument, match="result_budget_bytes"):
            worker.add_tool(greedy)
        assert set(worker.tools) == {slow_name}
        assert worker.error is None

        # A later Register after the refusals is answered too, and served.
        @async_tool(name=unique("later"))
        def later(x: int) -> int:
            return x + 1

        worker.add_tool(later)
        assert (
            client.result(client.submit(tool_name(later), x=1).task_id, timeout=EVENT_TIMEOUT) == 2
        )

        release.set()
        assert client.result(running, timeout=EVENT_TIMEOUT) == 7
        assert client.get_task(running).attempts == 1  # ran on, not given again
        assert client.get_task(running).status == TaskStatus.SUCCEEDED
    finally:
        release.set()


def tool_name(fn: Callable[..., object]) -> str:
    from errand.tool import tool_def

    return tool_def(fn).name


def test_a_refused_decorator_on_a_running_manager_raises_and_the_manager_goes_on(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    shared_name = unique("shared")

    @async_tool(name=shared_name)
    def shared(text: str) -> str:
        return text

    start_worker(shared)
    manager = AsyncToolManager(max_workers=2, target=server)
    release = threading.Event()

    @async_tool(manager)
    def first(x: int) -> int:
        release.wait(EVENT_TIMEOUT)
        return x

    manager.start()
    try:
        running = first.submit(x=1).task_id
        with pytest.raises(FailedPrecondition):
            manager.submit(shared_name, lambda text: text, text="x")
        with pytest.raises(FailedPrecondition):

            @async_tool(manager, name=shared_name)
            def clash(n: int) -> int:
                return n

        assert set(manager.tools) == {"first"}
        release.set()
        assert manager.result(running, timeout=EVENT_TIMEOUT) == 1
        assert manager.get_task(running).attempts == 1
        assert manager.result(first.submit(x=2).task_id, timeout=EVENT_TIMEOUT) == 2
    finally:
        release.set()
        manager.stop()
