"""A worker's plain tool calls, from assignment to outgoing message, without a
server: cancellation before and during a call, outcomes that cannot be
encoded, progress from the tool's thread, and the pool's threads afterwards."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Callable, Coroutine, Optional, TypeVar

from errand import async_tool, current_task, report_progress
from errand._calls import Done, Running
from errand._pool import CallPool
from errand.v1 import errand_pb2 as pb
from errand.worker import Worker

from .conftest import EVENT_TIMEOUT

T = TypeVar("T")


class Harness:
    """One connection's worth of the worker's state, on the running loop."""

    def __init__(self, *tools: Callable[..., Any], max_concurrency: int = 1) -> None:
        self.loop = asyncio.get_running_loop()
        self.worker = Worker("127.0.0.1:1", tools=list(tools), max_concurrency=max_concurrency)
        self.outgoing: asyncio.Queue[Optional[pb.WorkerMessage]] = asyncio.Queue()
        self.running: dict[str, Running] = {}
        self.done = Done(self.loop, self.running, self.outgoing)
        self.pool = CallPool(self.loop, max_concurrency, "plain", stuck_after=0.001)

    def assign(self, task_id: str, tool: str, **arguments: Any) -> None:
        assignment = pb.Assignment(
            task_id=task_id, tool=tool, arguments_json=json.dumps(arguments), attempt=1
        )
        self.worker._spawn(assignment, self.running, self.outgoing, self.pool, self.done)

    async def next(self) -> pb.WorkerMessage:
        msg = await asyncio.wait_for(self.outgoing.get(), EVENT_TIMEOUT)
        assert msg is not None
        return msg


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


def test_a_queued_call_cancelled_before_it_starts_never_runs_nor_answers() -> None:
    ran: list[str] = []
    release = threading.Event()

    @async_tool(name="block")
    def block() -> str:
        ran.append("block")
        started.set()
        release.wait(EVENT_TIMEOUT)
        return "block"

    @async_tool(name="queued")
    def queued(i: int) -> int:
        ran.append(f"queued{i}")
        return i

    started = threading.Event()

    async def scenario() -> list[pb.WorkerMessage]:
        h = Harness(block, queued)
        try:
            h.assign("b", "block")
            await asyncio.to_thread(started.wait, EVENT_TIMEOUT)
            h.assign("q1", "queued", i=1)
            h.assign("q2", "queued", i=2)
            # The server cancels q1 (or times it out) while it waits for the thread.
            h.running["q1"].cancel("timed out")
            cancelled_ctx = h.running["q1"].ctx
            release.set()
            results = [await h.next(), await h.next()]
            assert cancelled_ctx.cancelled.is_set() and cancelled_ctx.cancel_reason == "timed out"
            # Its entry is gone too: nothing of it stays behind.
            assert "q1" not in h.running
            return results
        finally:
            release.set()
            h.pool.shutdown()

    results = run(scenario)
    assert [m.result.task_id for m in results] == ["b", "q2"]
    assert ran == ["block", "queued2"]


def test_a_running_call_cancelled_sends_no_result_and_frees_its_thread() -> None:
    started = threading.Event()
    returned = threading.Event()

    @async_tool(name="polls")
    def polls() -> str:
        ctx = current_task()
        assert ctx is not None
        started.set()
        ctx.cancelled.wait(EVENT_TIMEOUT)
        returned.set()
        return "too late"

    @async_tool(name="after")
    def after() -> str:
        return "after"

    async def scenario() -> pb.WorkerMessage:
        h = Harness(polls, after)
        try:
            h.assign("p", "polls")
            await asyncio.to_thread(started.wait, EVENT_TIMEOUT)
            h.running["p"].cancel("cancelled")
            await asyncio.to_thread(returned.wait, EVENT_TIMEOUT)
            # Its thread took no other call meanwhile; it takes this one. Its
            # outcome went to the loop before this call's, which ends it.
            h.assign("a", "after")
            msg = await h.next()
            assert h.pool.threads == 1
            assert h.outgoing.empty() and "p" not in h.running
            return msg
        finally:
            h.pool.shutdown()

    msg = run(scenario)
    assert (msg.result.task_id, json.loads(msg.result.result_json)) == ("a", "after")


def test_base_exceptions_in_a_plain_tool_are_failed_results() -> None:
    @async_tool(name="interrupt")
    def interrupt() -> str:
        raise KeyboardInterrupt("ctrl-c in a tool")

    @async_tool(name="leave")
    def leave() -> str:
        raise SystemExit(2)

    @async_tool(name="fine")
    def fine() -> str:
        return "fine"

    async def scenario() -> list[pb.WorkerMessage]:
        h = Harness(interrupt, leave, fine)
        try:
            for tool in ("interrupt", "leave", "fine"):
                h.assign(tool, tool)
            msgs = [await h.next() for _ in range(3)]
            assert h.pool.threads == 1
            return msgs
        finally:
            h.pool.shutdown()

    a, b, c = run(scenario)
    assert (a.result.error.code, a.result.error.message) == (
        "tool_error",
        "KeyboardInterrupt: ctrl-c in a tool",
    )
    assert (b.result.error.code, b.result.error.message) == ("tool_error", "SystemExit: 2")
    assert json.loads(c.result.result_json) == "fine"


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class BadModel:
    """Looks like a pydantic 2 model whose dump fails with a non-ValueError."""

    def model_dump(self, mode: str) -> Any:
        raise KeyError("missing field")


#: Deeper than any CPython's limit on the JSON encoder's recursion (3.13: 10,000).
DEEP = 30_000


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_an_outcome_that_cannot_be_encoded_is_still_a_failed_result() -> None:
    """Whatever goes wrong turning a call's outcome into a message, the call
    answers (FAILED), instead of leaving its task to the server's timeout."""

    @async_tool(name="deep")
    def deep() -> list[Any]:
        return nested(DEEP)  # RecursionError in the JSON encoder

    @async_tool(name="model")
    def model() -> Any:
        return BadModel()

    @async_tool(name="unprintable")
    def unprintable() -> str:
        raise Unprintable()

    @async_tool(name="unprintable_async")
    async def unprintable_async() -> str:
        raise Unprintable()

    # Not `deep` in an `async def` tool: with a RecursionError on the main
    # thread, test_stopping_a_worker_prints_nothing failed 3 runs in 17 on
    # CPython 3.11 (0 in 9 without it); the cause is not known.
    tools = (deep, model, unprintable, unprintable_async)
    names = ["deep", "model", "unprintable", "unprintable_async"]

    async def scenario() -> dict[str, pb.TaskResult]:
        h = Harness(*tools)
        try:
            for name in names:
                h.assign(name, name)
            results = {}
            for _ in names:
                msg = await h.next()
                results[msg.result.task_id] = msg.result
            assert not h.running
            return results
        finally:
            h.pool.shutdown()

    results = run(scenario)
    assert sorted(results) == sorted(names)
    for name in ("deep", "model"):
        assert results[name].error.code == "invalid_result"
        assert "not JSON serialisable" in results[name].error.message
    assert "RecursionError" in results["deep"].error.message
    assert "KeyError" in results["model"].error.message
    for name in ("unprintable", "unprintable_async"):
        assert results[name].error.code == "tool_error"
        assert results[name].error.message.startswith("Unprintable")


def test_progress_from_the_tools_thread_goes_out_in_order_before_the_result() -> None:
    reports = 2000

    @async_tool(name="chatty")
    def chatty(n: int) -> int:
        for i in range(n):
            report_progress(i + 1, n, f"step {i + 1}")
        return n

    async def scenario() -> list[list[pb.WorkerMessage]]:
        h = Harness(chatty, max_concurrency=3)
        try:
            for t in ("x", "y", "z"):
                h.assign(t, "chatty", n=reports)
            by_task: dict[str, list[pb.WorkerMessage]] = {"x": [], "y": [], "z": []}
            results = 0
            while results < 3:
                msg = await h.next()
                kind = msg.WhichOneof("kind")
                task_id = msg.result.task_id if kind == "result" else msg.progress.task_id
                by_task[task_id].append(msg)
                results += kind == "result"
            return list(by_task.values())
        finally:
            h.pool.shutdown()

    for msgs in run(scenario):
        *progress, last = msgs
        assert [m.progress.progress for m in progress] == [float(i + 1) for i in range(reports)]
        assert json.loads(last.result.result_json) == reports


def test_a_thread_reporting_after_the_loop_closed_keeps_nothing() -> None:
    """A tool that goes on reporting after its worker stopped (the loop is
    closed, nobody reads) must not pile its reports up for ever."""
    loop = asyncio.new_event_loop()
    outgoing: asyncio.Queue[Optional[pb.WorkerMessage]] = asyncio.Queue()
    done = Done(loop, {}, outgoing)
    loop.close()

    def report() -> None:
        for i in range(1000):
            done.send(pb.WorkerMessage(progress=pb.Progress(task_id="t", progress=i)))

    thread = threading.Thread(target=report)
    thread.start()
    thread.join(EVENT_TIMEOUT)
    assert len(done._queued) <= 1


def test_text_that_is_not_utf8_in_an_outcome_is_escaped_not_lost() -> None:
    """Lone surrogates (`os.fsdecode` of a file name that is not UTF-8) cannot
    go into a protobuf string: the call still answers."""
    name = "\udcff.txt"

    @async_tool(name="missing")
    def missing() -> str:
        with open(f"/nonexistent-errand-test/{name}"):
            return "found"

    @async_tool(name="returns")
    def returns() -> str:
        return name

    async def scenario() -> dict[str, pb.TaskResult]:
        h = Harness(missing, returns)
        try:
            h.assign("m", "missing")
            h.assign("r", "returns")
            msgs = [await h.next(), await h.next()]
            return {m.result.task_id: m.result for m in msgs}
        finally:
            h.pool.shutdown()

    results = run(scenario)
    assert results["m"].error.message.startswith("FileNotFoundError: ")
    assert "\\udcff.txt" in results["m"].error.message
    assert results["r"].error.code == "invalid_result"
    assert "not JSON serialisable" in results["r"].error.message
