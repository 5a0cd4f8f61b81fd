"""The worker side of progress, resume and summaries, without a server."""

from __future__ import annotations

import asyncio
import json

import pytest

from errand import Fallback, Summarized, TaskContext, async_tool, current_task, report_progress
from errand.tool import tool_def
from errand.v1 import errand_pb2 as pb
from errand.worker import Worker, resume_detail


def context(sent: list[pb.WorkerMessage], resume: str = "") -> TaskContext:
    return TaskContext("t1", "s1", "crawl", 2, 0, resume_detail_json=resume, _send=sent.append)


def test_report_progress_sends_a_worker_message_for_the_attempt() -> None:
    sent: list[pb.WorkerMessage] = []
    ctx = context(sent, resume='{"page": 3}')
    assert ctx.resume_detail == {"page": 3}
    ctx.report_progress(4, 10, "page 4 of 10", {"page": 4})
    (msg,) = sent
    p = msg.progress
    assert (p.task_id, p.attempt, p.progress, p.total) == ("t1", 2, 4.0, 10.0)
    assert (p.message, json.loads(p.detail_json)) == ("page 4 of 10", {"page": 4})
    with pytest.raises(ValueError, match="at most 65536 bytes"):
        ctx.report_progress(detail="x" * 70_000)
    with pytest.raises(ValueError, match=">= 0"):
        ctx.report_progress(-1)
    ctx.cancelled.set()
    ctx.report_progress(5, 10)  # after a cancel: dropped, no error
    assert len(sent) == 1


def test_the_module_functions_use_the_running_tool_call() -> None:
    with pytest.raises(RuntimeError, match="report_progress"):
        report_progress(1, 2)
    assert resume_detail() is None


def test_tool_options_reach_the_registration() -> None:
    @async_tool(
        delivery="interrupt",
        dedup="join_in_flight",
        result_budget_bytes=2048,
        fallback="backup_search",
        cancellable_by_model=True,
    )
    def search(query: str) -> str:
        return query

    @async_tool(fallback=Fallback(last_good_max_age_ms=60_000))
    def quotes(symbol: str) -> str:
        return symbol

    register = Worker("127.0.0.1:1", tools=[search, quotes])._register_message().register
    one, two = register.tools
    assert (one.delivery, one.dedup) == (
        pb.DELIVERY_POLICY_INTERRUPT,
        pb.DEDUP_POLICY_JOIN_IN_FLIGHT,
    )
    assert (one.result_budget_bytes, one.cancellable_by_model) == (2048, True)
    assert one.fallback.tool == "backup_search"
    assert two.fallback.last_good_max_age_ms == 60_000
    assert two.delivery == pb.DELIVERY_POLICY_UNSPECIFIED and not two.cancellable_by_model
    with pytest.raises(ValueError, match="own fallback"):
        tool_def(search, fallback="search")
    with pytest.raises(ValueError, match="delivery must be one of"):
        tool_def(search, delivery="sometimes")


@pytest.mark.parametrize("mode", ["thread", "asyncio"])
def test_a_tool_reports_progress_and_sends_a_summary_in_both_modes(mode: str) -> None:
    """The worker's own execution path, with a fake outgoing queue."""

    def crawl_sync(pages: int) -> Summarized:
        ctx = current_task()
        assert ctx is not None and ctx.resume_detail == {"page": 1}
        for page in range(2, pages + 1):
            report_progress(page, pages, f"page {page}", {"page": page})
        return Summarized({"pages": pages}, "crawled")

    async def crawl_async(pages: int) -> Summarized:
        return crawl_sync(pages)

    fn = crawl_sync if mode == "thread" else crawl_async
    fn.__name__ = "crawl"
    worker = Worker("127.0.0.1:1", tools=[fn])

    async def scenario() -> tuple[list[pb.WorkerMessage], pb.TaskResult]:
        from errand._calls import Done
        from errand._pool import CallPool

        outgoing: asyncio.Queue[object] = asyncio.Queue()
        running: dict[str, object] = {}
        done = Done(asyncio.get_running_loop(), running, outgoing)  # type: ignore[arg-type]
        assignment = pb.Assignment(
            task_id="t9",
            tool="crawl",
            arguments_json='{"pages": 3}',
            attempt=2,
            resume_detail_json='{"page": 1}',
        )
        sent = []
        pool = CallPool(asyncio.get_running_loop(), 1, "test")
        try:
            worker._spawn(assignment, running, outgoing, pool, done)  # type: ignore[arg-type]
            # Progress goes out in order, then the result.
            while True:
                msg = await asyncio.wait_for(outgoing.get(), 10)
                assert isinstance(msg, pb.WorkerMessage)
                if msg.WhichOneof("kind") == "result":
                    return sent, msg.result
                sent.append(msg)
        finally:
            pool.shutdown()

    sent, result = asyncio.run(scenario())
    assert [m.progress.progress for m in sent] == [2.0, 3.0]
    assert all(m.progress.task_id == "t9" and m.progress.attempt == 2 for m in sent)
    assert json.loads(result.result_json) == {"pages": 3} and result.summary == "crawled"


def test_every_outgoing_message_fits_the_servers_limit() -> None:
    from errand._outgoing import cut_utf8, fit

    limit = 4096
    # A summary the server would cut anyway is cut to fit; the result stays.
    result = pb.TaskResult(task_id="t", attempt=1, result_json='"ok"', summary="s" * 10_000)
    fitted = fit(pb.WorkerMessage(result=result), limit)
    assert fitted is not None and fitted.ByteSize() <= limit
    assert fitted.result.result_json == '"ok"' and fitted.result.summary.startswith("sss")
    # A result JSON that does not fit fails its task, saying the size and limit.
    result = pb.TaskResult(task_id="t", attempt=1, result_json='"' + "a" * 10_000 + '"')
    fitted = fit(pb.WorkerMessage(result=result), limit)
    assert fitted is not None and fitted.result.error.code == "invalid_result"
    message = fitted.result.error.message
    assert "10002 bytes" in message and f"at most {limit} bytes" in message, message
    assert "--max-message-bytes" in message and "--max-result-bytes" in message, message
    # A failure keeps its code, its text cut to fit and saying so.
    error = pb.ToolError(code="busy", message="é" * 10_000)
    fitted = fit(pb.WorkerMessage(result=pb.TaskResult(task_id="t", error=error)), limit)
    assert fitted is not None and fitted.ByteSize() <= limit
    assert fitted.result.error.code == "busy"
    assert fitted.result.error.message.endswith(f"message limit of {limit} bytes]")
    # A progress report over the limit (checked at report time) is not sent.
    progress = pb.Progress(task_id="t", detail_json='"' + "d" * 10_000 + '"')
    assert fit(pb.WorkerMessage(progress=progress), limit) is None
    assert cut_utf8("aé", 2) == "a" and cut_utf8("aé", 3) == "aé"


def test_report_progress_refuses_what_the_server_would_ignore() -> None:
    sent: list[pb.WorkerMessage] = []
    ctx = context(sent)
    with pytest.raises(ValueError, match="JSON"):
        ctx.report_progress(detail={"x": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        ctx.report_progress(detail=object())
    ctx._max_message = 200
    with pytest.raises(ValueError, match="message limit of 200 bytes"):
        ctx.report_progress(detail="x" * 300)
    ctx._max_message = 4096
    ctx.report_progress(1, 2, "ü" * 5000)  # cut, not refused
    (msg,) = sent
    assert msg.progress.message == "ü" * 512
