"""Worker against the real server: results, failures, concurrency, cancellation."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable, Optional

import pydantic
import pytest

from errand import (
    AsyncClient,
    Client,
    InvalidArgument,
    TaskStatus,
    ToolFailure,
    Worker,
    async_tool,
    current_task,
)
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, Collector, Quiet, unique


class Point(pydantic.BaseModel):
    x: int
    y: int


def name_of(fn: Callable[..., object]) -> str:
    return tool_def(fn).name


def test_exceptions_become_failed_completions(
    client: Client, start_worker: Callable[..., Worker], collect: Callable[..., Collector]
) -> None:
    @async_tool(name=unique("explode"))
    def explode(why: str) -> str:
        raise ValueError(f"cannot do {why}")

    @async_tool(name=unique("refuse"))
    async def refuse() -> str:
        raise ToolFailure("quota used up", code="quota")

    start_worker(explode, refuse)
    stream = collect(client.completions())
    a = client.submit(name_of(explode), why="that")
    (done,) = stream.take(1)
    assert done.task_id == a.task_id
    assert done.status == TaskStatus.FAILED
    assert done.error is not None
    assert done.error.code == "tool_error"
    assert "ValueError: cannot do that" in done.error.message
    assert done.result is None

    b = client.submit(name_of(refuse))
    (done,) = stream.take(1)
    assert (done.task_id, done.status) == (b.task_id, TaskStatus.FAILED)
    assert done.error is not None and done.error.code == "quota"
    assert done.error.message == "quota used up"
    assert client.get_task(b.task_id).status == TaskStatus.FAILED


def test_a_tool_that_raises_is_logged_with_its_traceback(
    client: Client,
    start_worker: Callable[..., Worker],
    collect: Callable[..., Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The model sees the short message; whoever runs the worker sees where it
    # raised (at WARNING, shown by logging's defaults), in both modes.
    caplog.set_level(logging.WARNING, logger="errand.worker")

    def lookup_deep_inside(d: dict[str, int]) -> int:
        return d["missing"]

    @async_tool(name=unique("crash"))
    def crash(n: int) -> int:
        return lookup_deep_inside({})

    @async_tool(name=unique("acrash"))
    async def acrash(n: int) -> int:
        return lookup_deep_inside({})

    @async_tool(name=unique("refuse"))
    def refuse() -> int:
        raise ToolFailure("quota used up", code="quota")

    start_worker(crash, acrash, refuse)
    stream = collect(client.completions())
    for fn in (crash, acrash):
        ack = client.submit(name_of(fn), n=1)
        (done,) = stream.take(1)  # logged before the result is sent
        assert done.task_id == ack.task_id
        assert done.error is not None and done.error.message == "KeyError: 'missing'"
        (record,) = [r for r in caplog.records if ack.task_id in r.getMessage()]
        assert record.levelno >= logging.WARNING, record
        assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)
        assert "lookup_deep_inside" in caplog.text
        assert name_of(fn) in record.getMessage()
        caplog.clear()
    # A deliberate ToolFailure is the tool's answer, not a crash: no traceback.
    ack = client.submit(name_of(refuse))
    (done,) = stream.take(1)
    assert done.error is not None and done.error.code == "quota"
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def test_values_async_tools_and_pydantic_arguments(
    client: Client, start_worker: Callable[..., Worker], collect: Callable[..., Collector]
) -> None:
    @async_tool(name=unique("norm"))
    async def norm(p: Point, scale: Optional[int] = None) -> Point:
        await asyncio.sleep(0)
        task = current_task()
        assert task is not None and task.attempt == 1
        return Point(x=p.x * (scale or 1), y=p.y * (scale or 1))

    @async_tool(name=unique("whoami"))
    def whoami() -> dict[str, str]:
        task = current_task()
        assert task is not None
        return {"task_id": task.task_id, "session_id": task.session_id}

    start_worker(norm, whoami)
    stream = collect(client.completions())
    a = client.submit(name_of(norm), p={"x": 1, "y": 2}, scale=3)
    (done,) = stream.take(1)
    assert (done.task_id, done.status, done.result) == (
        a.task_id,
        TaskStatus.SUCCEEDED,
        {"x": 3, "y": 6},
    )
    b = client.submit(name_of(whoami))
    (done,) = stream.take(1)
    assert done.result == {"task_id": b.task_id, "session_id": client.session_id}


def test_max_concurrency_bounds_running_calls(
    client: Client, start_worker: Callable[..., Worker], collect: Callable[..., Collector]
) -> None:
    release = threading.Event()
    lock = threading.Lock()
    running = 0
    peak = 0
    two_running = threading.Event()

    @async_tool(name=unique("slow"))
    def slow(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 2:
                two_running.set()
        release.wait(EVENT_TIMEOUT)
        with lock:
            running -= 1
        return i

    start_worker(slow, max_concurrency=2)
    stream = collect(client.completions())
    acks = [client.submit(name_of(slow), i=i) for i in range(6)]
    assert two_running.wait(EVENT_TIMEOUT)
    # Two run; the server holds the other four back for this worker.
    statuses = [client.get_task(a.task_id).status for a in acks]
    assert statuses.count(TaskStatus.RUNNING) == 2, statuses
    assert statuses.count(TaskStatus.QUEUED) == 4, statuses
    release.set()
    results = stream.take(6)
    assert sorted(c.result for c in results) == list(range(6))
    assert peak == 2


def test_a_blocking_plain_call_does_not_hold_up_the_others(
    client: Client, start_worker: Callable[..., Worker], collect: Callable[..., Collector]
) -> None:
    started = threading.Event()
    release = threading.Event()

    @async_tool(name=unique("stuck"))
    def stuck() -> str:
        started.set()
        release.wait(EVENT_TIMEOUT)
        return "released"

    @async_tool(name=unique("quick"))
    def quick(i: int) -> int:
        return i

    start_worker(stuck, quick, max_concurrency=4)
    stream = collect(client.completions())
    blocked = client.submit(name_of(stuck))
    assert started.wait(EVENT_TIMEOUT)
    for i in range(3):
        client.submit(name_of(quick), i=i)
    # The quick calls end while the stuck one still waits on its thread.
    assert sorted(c.result for c in stream.take(3)) == [0, 1, 2]
    release.set()
    (last,) = stream.take(1)
    assert (last.task_id, last.result) == (blocked.task_id, "released")


def test_cancellation_reaches_a_running_tool(
    client: Client, start_worker: Callable[..., Worker], collect: Callable[..., Collector]
) -> None:
    started = threading.Event()
    saw_cancel = threading.Event()
    reason: list[str] = []

    @async_tool(name=unique("long_sync"))
    def long_sync() -> str:
        task = current_task()
        assert task is not None
        started.set()
        if task.cancelled.wait(EVENT_TIMEOUT):
            reason.append(task.cancel_reason)
            saw_cancel.set()
            return "stopped early"
        return "ran to the end"

    async_started = threading.Event()
    async_cancelled = threading.Event()

    @async_tool(name=unique("long_async"))
    async def long_async() -> str:
        async_started.set()
        try:
            await asyncio.sleep(EVENT_TIMEOUT)
        except asyncio.CancelledError:
            async_cancelled.set()
            raise
        return "ran to the end"

    start_worker(long_sync, long_async)
    stream = collect(client.completions())

    a = client.submit(name_of(long_sync))
    assert started.wait(EVENT_TIMEOUT)
    task = client.cancel(a.task_id)
    assert task.status == TaskStatus.CANCELLED
    assert saw_cancel.wait(EVENT_TIMEOUT)
    assert reason == ["cancelled"]
    (done,) = stream.take(1)
    assert (done.task_id, done.status) == (a.task_id, TaskStatus.CANCELLED)
    # Cancelling again answers the task unchanged.
    assert client.cancel(a.task_id).status == TaskStatus.CANCELLED

    b = client.submit(name_of(long_async))
    assert async_started.wait(EVENT_TIMEOUT)
    client.cancel(b.task_id)
    assert async_cancelled.wait(EVENT_TIMEOUT)
    (done,) = stream.take(1)
    assert (done.task_id, done.status) == (b.task_id, TaskStatus.CANCELLED)


def test_timeout_reaches_a_running_tool(
    client: Client, start_worker: Callable[..., Worker], collect: Callable[..., Collector]
) -> None:
    reasons: list[str] = []
    seen = threading.Event()

    @async_tool(name=unique("stuck"))
    def stuck() -> str:
        task = current_task()
        assert task is not None
        task.cancelled.wait(EVENT_TIMEOUT)
        reasons.append(task.cancel_reason)
        seen.set()
        return "late"

    start_worker(stuck)
    stream = collect(client.completions())
    a = client.submit(name_of(stuck), timeout_ms=300)
    (done,) = stream.take(1)
    assert (done.task_id, done.status) == (a.task_id, TaskStatus.TIMED_OUT)
    assert seen.wait(EVENT_TIMEOUT)
    assert reasons == ["timeout"]


def test_a_worker_the_server_refuses_raises_on_start(server: str) -> None:
    @async_tool(name=unique("verbose"), description="x" * 100_000)
    def verbose() -> None:
        pass

    worker = Worker(server, tools=[verbose])
    with pytest.raises(InvalidArgument):
        worker.start(timeout=EVENT_TIMEOUT)
    assert isinstance(worker.error, InvalidArgument)


def test_stopping_a_worker_prints_nothing(server: str, quiet: Quiet) -> None:
    # stop() cancelled the stream and its reader mid-read: the read's and the
    # call's gRPC operations completed after the worker's loop closed, and
    # gRPC's poller printed "RuntimeError: Event loop is closed" through
    # another loop of the process (here the bystander's).
    @async_tool(name=unique("echo"))
    async def echo(i: int) -> int:
        return i

    name = tool_def(echo).name

    async def use() -> None:
        quiet.watch()
        async with AsyncClient(server, session_id=unique("session")) as client:
            acks = [await client.submit(name, i=i) for i in range(5)]
            results = [await client.result(a.task_id, timeout=EVENT_TIMEOUT) for a in acks]
            assert results == list(range(5))

    bystander = Worker(server, tools=[echo], name="bystander")
    bystander.start(timeout=EVENT_TIMEOUT)
    try:
        for n in range(10):
            worker = Worker(server, tools=[echo], name=f"stopped-{n}")
            worker.start(timeout=EVENT_TIMEOUT)
            asyncio.run(use())
            worker.stop()
            assert worker.error is None
            quiet.round_trip()
    finally:
        bystander.stop()
    assert bystander.error is None
    quiet.check()
