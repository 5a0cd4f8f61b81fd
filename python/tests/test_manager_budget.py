"""`AsyncToolManager` with a result over its budget: the manager reads it whole before
it acknowledges the completion, and the server keeps it after the ack, so `result()`
still reads it."""

from __future__ import annotations

import queue

from errand import AsyncTaskResult, AsyncToolManager, async_tool

from .conftest import EVENT_TIMEOUT, unique

# Over the server's default result budget (16 KiB): delivered as a preview.
BIG = "row " * 10_000


def test_a_result_over_its_budget_reads_whole_before_and_after_the_ack(server: str) -> None:
    manager = AsyncToolManager(max_workers=2, session_id=unique("session"))
    seen: queue.Queue[AsyncTaskResult] = queue.Queue()
    manager.add_done_callback(seen.put)

    @async_tool(manager)
    def report(name: str) -> str:
        """A long report, or a short one."""
        return BIG if name == "big" else "short"

    try:
        big_id = manager.submit("report", report, name="big")
        big = seen.get(timeout=EVENT_TIMEOUT)
        assert big.task_id == big_id
        assert big.completion.result_truncated, "delivered as a preview"
        assert big.result == BIG, "the callback gets it whole"
        # The listener acknowledges each completion after its callbacks, in
        # order: once the next one's callback ran, the big one is acknowledged.
        small_id = manager.submit("report", report, name="small")
        small = seen.get(timeout=EVENT_TIMEOUT)
        assert (small.task_id, small.result) == (small_id, "short")
        assert manager.client.pending_digest().acked_seq >= big.completion.seq
        assert manager.result(big_id, timeout=EVENT_TIMEOUT) == BIG
    finally:
        manager.stop()
