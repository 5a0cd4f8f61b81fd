"""Every message a worker sends keeps within the server's bounds; none ends its stream.

A progress report whose message or detail was larger than the server's
message limit (Registered.max_message_bytes) was refused by the transport:
the worker's stream ended, the task went to another attempt and the caller
waited. Now the worker cuts a progress message at the server's 1 KiB (as the
server would), the progress call raises ValueError for a detail the server
would refuse or that does not fit in one message, and a failure's long text
is cut to fit, keeping its code.
"""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from errand import Client, Progress, TaskStatus, ToolFailure, Worker, async_tool, current_task
from errand.context import MAX_DETAIL_BYTES, MAX_PROGRESS_MESSAGE_BYTES

from .conftest import EVENT_TIMEOUT, Collector, ServerProcess, free_port, unique

# The smallest message limit these result and argument limits allow, below
# the 64 KiB a progress detail may take.
MESSAGE_LIMIT = 32 * 1024
SMALL_LIMITS = (
    "--max-message-bytes",
    str(MESSAGE_LIMIT),
    "--max-arguments-bytes",
    "4096",
    "--max-result-bytes",
    "4096",
    "--max-schema-bytes",
    "4096",
    "--max-description-bytes",
    "1024",
)


@pytest.fixture
def small_server(server_factory: Callable[..., ServerProcess]) -> str:
    proc = server_factory(
        "--listen", f"127.0.0.1:{free_port()}", "--store", "memory", *SMALL_LIMITS
    )
    return proc.start()


def test_oversized_progress_is_cut_or_refused_and_the_stream_stays(
    small_server: str, collect: Callable[..., Collector]
) -> None:
    seen_cut = threading.Event()
    refusals: list[str] = []

    @async_tool(name=unique("chatty"))
    def chatty() -> str:
        ctx = current_task()
        assert ctx is not None
        # 1 MiB of status: cut to the server's 1 KiB, on a character boundary.
        ctx.report_progress(1, 3, "é" * (512 * 1024), {"step": 1})
        assert seen_cut.wait(EVENT_TIMEOUT)
        # Within the server's 64 KiB detail bound, over this server's message limit.
        for detail in ("x" * (MESSAGE_LIMIT + 1000), "x" * (MAX_DETAIL_BYTES + 1)):
            try:
                ctx.report_progress(2, 3, "big detail", detail)
            except ValueError as exc:
                refusals.append(str(exc))
        ctx.report_progress(3, 3, "done", {"step": 3})
        return "finished"

    worker = Worker(small_server, tools=[chatty])
    worker.start(timeout=EVENT_TIMEOUT)
    try:
        with Client(small_server, session_id=unique("session")) as client:
            ack = client.submit(unique_name(chatty))
            events = collect(client.session_events())
            (first,) = events.take(1)
            assert isinstance(first, Progress), first
            assert first.message == "é" * (MAX_PROGRESS_MESSAGE_BYTES // 2), len(first.message)
            assert first.detail == {"step": 1}
            seen_cut.set()
            (done,) = events.take(1)
            while isinstance(done, Progress):  # the last report, if it came first
                (done,) = events.take(1)
            assert (done.task_id, done.status, done.result) == (
                ack.task_id,
                TaskStatus.SUCCEEDED,
                "finished",
            )
            assert done.attempts == 1  # never requeued: the stream never broke
        assert worker.registrations == 1 and worker.error is None
        over_limit, over_bound = refusals
        assert f"the server's message limit of {MESSAGE_LIMIT} bytes" in over_limit, over_limit
        assert f"at most {MAX_DETAIL_BYTES} bytes" in over_bound, over_bound
    finally:
        worker.stop()


def test_a_failure_longer_than_a_message_keeps_its_code_cut_to_fit(
    small_server: str, collect: Callable[..., Collector]
) -> None:
    @async_tool(name=unique("loud"))
    def loud(kind: str) -> str:
        if kind == "failure":
            raise ToolFailure("slow down " + "z" * (2 * MESSAGE_LIMIT), code="rate_limited")
        raise RuntimeError("w" * (2 * MESSAGE_LIMIT))

    worker = Worker(small_server, tools=[loud])
    worker.start(timeout=EVENT_TIMEOUT)
    try:
        with Client(small_server, session_id=unique("session")) as client:
            completions = collect(client.completions())
            for kind, code, start in [
                ("failure", "rate_limited", "slow down zzz"),
                ("exception", "tool_error", "RuntimeError: www"),
            ]:
                task = client.submit(unique_name(loud), kind=kind)
                (done,) = completions.take(1)
                assert done.task_id == task.task_id
                assert done.status == TaskStatus.FAILED and done.error is not None
                assert done.error.code == code, done.error
                assert done.error.message.startswith(start), done.error.message[:80]
                assert done.attempts == 1
        assert worker.registrations == 1 and worker.error is None
    finally:
        worker.stop()


def unique_name(fn: Callable[..., object]) -> str:
    from errand.tool import tool_def

    return tool_def(fn).name


def test_a_server_set_above_16_mib_delivers_whole_results(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # The SDK's channels took at most 16 MiB either way, whatever the server
    # said: a 17 MiB result within the server's limits failed the task on the
    # worker ("over the server's message limit of 16777216") and the agent's
    # stream refused its completion.
    size = 17 * 1024 * 1024
    target = server_factory(
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--store",
        "memory",
        "--max-message-bytes",
        str(40 * 1024 * 1024),
        "--max-result-bytes",
        str(20 * 1024 * 1024),
        "--result-budget-bytes",
        str(20 * 1024 * 1024),
        "--max-result-budget-bytes",
        str(20 * 1024 * 1024),
    ).start()

    @async_tool(name=unique("huge"))
    def huge() -> str:
        return "x" * (size - 2)  # a JSON string of `size` bytes

    worker = Worker(target, tools=[huge])
    worker.start(timeout=EVENT_TIMEOUT)
    try:
        with Client(target, session_id=unique("session")) as client:
            ack = client.submit(unique_name(huge))
            stream = client.completions()
            completion = next(iter(stream))
            assert completion.task_id == ack.task_id
            assert completion.status is TaskStatus.SUCCEEDED, completion.error
            assert len(completion.result_json or "") == size
    finally:
        worker.stop()
