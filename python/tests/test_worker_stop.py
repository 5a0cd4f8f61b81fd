"""Stopping a worker whose plain calls block (against the real server)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from typing import Callable

from errand import Client, TaskStatus, Worker, async_tool, report_progress
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, PYTHON_DIR, Collector, unique

#: Generous: a stop waits for the server to end the stream (`_CLOSE_TIMEOUT`,
#: a round trip) and never for a tool's call.
STOP_BOUND = 10.0


def test_stop_returns_promptly_while_calls_block_and_the_blocked_ones_answer_nothing(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    gate = threading.Event()
    lock = threading.Lock()
    started: list[int] = []
    two_started = threading.Event()
    ended: list[int] = []

    @async_tool(name=unique("stubborn"))
    def stubborn(i: int) -> int:
        with lock:
            started.append(i)
            if len(started) == 2:
                two_started.set()
        gate.wait(EVENT_TIMEOUT)  # ignores cancellation, as careless tools do
        with lock:
            ended.append(i)
        return i

    name = unique("stopping")
    worker = start_worker(stubborn, max_concurrency=2, name=name)
    acks = [client.submit(tool_def(stubborn).name, i=i) for i in range(4)]
    assert two_started.wait(EVENT_TIMEOUT)
    pool_threads = [t for t in threading.enumerate() if t.name.startswith(f"errand-{name}_")]
    assert len(pool_threads) == 2
    t0 = time.monotonic()
    worker.stop(timeout=EVENT_TIMEOUT)
    assert time.monotonic() - t0 < STOP_BOUND
    assert worker._thread is not None and not worker._thread.is_alive()
    gate.set()
    for thread in pool_threads:
        thread.join(EVENT_TIMEOUT)
        assert not thread.is_alive()
    # Only the two that ran before the stop ever started; none after it.
    assert sorted(started) == sorted(ended) and len(started) == 2
    assert all(client.get_task(a.task_id).status != TaskStatus.SUCCEEDED for a in acks)


def test_a_call_that_never_returns_does_not_keep_the_interpreter_from_exiting(
    server: str,
) -> None:
    tool = unique("forever")
    script = textwrap.dedent(
        f"""
        import threading
        from errand import Client, Worker, async_tool

        started = threading.Event()

        @async_tool(name={tool!r})
        def forever() -> None:
            started.set()
            threading.Event().wait()  # never returns, never polls `cancelled`

        worker = Worker({server!r}, tools=[forever], max_concurrency=1).start()
        with Client({server!r}) as client:
            client.submit({tool!r})
        assert started.wait(30)
        worker.stop()
        print("stopped", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PYTHON_DIR,
        capture_output=True,
        text=True,
        timeout=EVENT_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "stopped"


def test_a_tool_can_stop_its_own_worker_from_its_thread(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    """The tool's thread joins the worker's, which shuts the pool down: no
    lock of the pool's is held across either."""
    stopped = threading.Event()
    holder: list[Worker] = []

    @async_tool(name=unique("quit"))
    def quit_worker() -> str:
        for i in range(100):
            report_progress(i, 100)
        holder[0].stop(timeout=EVENT_TIMEOUT)
        stopped.set()
        return "stopped"

    holder.append(start_worker(quit_worker))
    client.submit(tool_def(quit_worker).name)
    assert stopped.wait(EVENT_TIMEOUT)
    thread = holder[0]._thread
    assert thread is not None
    thread.join(EVENT_TIMEOUT)
    assert not thread.is_alive() and holder[0].error is None


def test_a_cancelled_call_that_ignores_it_does_not_hold_up_the_next(
    client: Client, start_worker: Callable[..., Worker], collect: Callable[..., Collector]
) -> None:
    """The server gives a cancelled task's slot to the next task at once;
    the next call starts even while the cancelled one still runs."""
    a_started = threading.Event()
    gate = threading.Event()

    @async_tool(name=unique("deaf"))
    def deaf() -> str:
        a_started.set()
        gate.wait(EVENT_TIMEOUT)  # never polls `cancelled`
        return "too late"

    @async_tool(name=unique("next"))
    def next_call() -> str:
        return "next"

    start_worker(deaf, next_call, max_concurrency=1)
    stream = collect(client.completions())
    first = client.submit(tool_def(deaf).name)
    assert a_started.wait(EVENT_TIMEOUT)
    second = client.submit(tool_def(next_call).name)
    client.cancel(first.task_id)
    try:
        done = {c.task_id: c for c in stream.take(2)}
        assert not gate.is_set()  # answered while `deaf` still blocks
    finally:
        gate.set()
    assert done[second.task_id].result == "next"
    assert done[first.task_id].status == TaskStatus.CANCELLED
