"""A result too large for one gRPC message fails its task; the worker stays.

Before, the transport refused the message, the worker's stream ended, the
task went back to the queue and took down the next worker the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from errand import Client, TaskStatus, Worker, async_tool

from .conftest import EVENT_TIMEOUT, Collector, ServerProcess, free_port, unique

MESSAGE_LIMIT = 1024 * 1024  # the smallest the server takes with the result limit below
RESULT_LIMIT = 512 * 1024


def test_a_result_over_the_message_limit_fails_the_task_and_the_worker_stays(
    server_factory: Callable[..., ServerProcess],
    tmp_path: Path,
    collect: Callable[..., Collector],
) -> None:
    proc = server_factory(
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--store",
        "memory",
        "--max-message-bytes",
        str(MESSAGE_LIMIT),
        "--max-result-bytes",
        str(RESULT_LIMIT),
    )
    address = proc.start()
    big_name, small_name = unique("big"), unique("small")

    @async_tool(name=big_name)
    def big(n: int) -> str:
        return "a" * n

    @async_tool(name=small_name)
    async def small() -> str:
        return "fine"

    worker = Worker(address, tools=[big, small])
    worker.start(timeout=EVENT_TIMEOUT)
    try:
        with Client(address, session_id=unique("session")) as client:
            stream = collect(client.completions())
            # Over the message limit: the worker fails it instead of sending it.
            over = client.submit(big_name, n=MESSAGE_LIMIT + 100_000)
            (done,) = stream.take(1)
            assert (done.task_id, done.status) == (over.task_id, TaskStatus.FAILED)
            assert done.error is not None and done.error.code == "invalid_result"
            message = done.error.message
            # The result's own size, and the bound it broke: the server's
            # largest message, by its flag. The worker is not told the
            # server's result limit (--max-result-bytes, here lower): the
            # text names that flag too, and does not pass the message limit
            # off as the limit on a result.
            assert f"{MESSAGE_LIMIT + 100_000 + 2} bytes" in message, message  # with its quotes
            assert f"{MESSAGE_LIMIT} bytes" in message and "--max-message-bytes" in message
            assert "--max-result-bytes" in message, message
            assert f"the limit is {MESSAGE_LIMIT}" not in message, message
            assert len(message) < 400, message
            assert done.attempts == 1  # not requeued: the worker never lost its stream

            # Over the result limit but within a message: the server's own check.
            between = client.submit(big_name, n=RESULT_LIMIT + 1000)
            (done,) = stream.take(1)
            assert (done.task_id, done.status) == (between.task_id, TaskStatus.FAILED)
            assert done.error is not None and done.error.code == "invalid_result"
            assert f"the limit is {RESULT_LIMIT}" in done.error.message

            # The same worker, on its first connection, still serves.
            ok = client.submit(small_name)
            (done,) = stream.take(1)
            assert (done.task_id, done.status, done.result) == (
                ok.task_id,
                TaskStatus.SUCCEEDED,
                "fine",
            )
            assert worker.registrations == 1
            assert worker.error is None
    finally:
        worker.stop()
