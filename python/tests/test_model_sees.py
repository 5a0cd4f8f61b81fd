"""Issue 17 end to end, against the real binary ($ERRAND_BIN), with a scripted model.

Each test needs a server feature of issue 17. It is skipped only when the
server answers UNIMPLEMENTED for the RPC that marks that feature's branch:
SessionEvents (delivery, progress, resume, cancel reasons: issue-17a),
PendingDigest (digest and ack: issue-17a), ReadResult (result budgets,
summaries, joined duplicates, fallbacks: issue-17b). Once merged, they run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import grpc
import pytest

from errand import (
    AsyncAgent,
    AsyncClient,
    Client,
    Completion,
    DeliveryPolicy,
    Progress,
    Summarized,
    TaskStatus,
    Worker,
    async_tool,
    current_task,
    report_progress,
)
from errand.integrations import session_tools
from errand.integrations._session import run_session_tool
from errand.tool import tool_def
from errand.v1 import errand_pb2 as pb
from errand.v1 import errand_pb2_grpc as pb_grpc

from .conftest import EVENT_TIMEOUT, unique
from .fakes import InterruptibleModel, ScriptedModel, Statuses

_answers: dict[tuple[str, str], bool] = {}


def require(address: str, rpc: str) -> None:
    """Skip unless the server implements `rpc` (probed once per server)."""
    key = (address, rpc)
    if key not in _answers:
        _answers[key] = _implemented(address, rpc)
    if not _answers[key]:
        pytest.skip(f"the server answers UNIMPLEMENTED for {rpc} (issue 17 not merged in it)")


def _implemented(address: str, rpc: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.ToolServiceStub(channel)
        try:
            if rpc == "SessionEvents":  # an empty session: no event, the deadline ends it
                next(stub.SessionEvents(pb.SessionEventsRequest(session_id="probe"), timeout=1))
            elif rpc == "PendingDigest":
                stub.PendingDigest(pb.PendingDigestRequest(session_id="probe"), timeout=10)
            else:
                stub.ReadResult(pb.ReadResultRequest(task_id="probe"), timeout=10)
        except grpc.RpcError as exc:
            return exc.code() != grpc.StatusCode.UNIMPLEMENTED
    return True


def name_of(fn: Callable[..., Any]) -> str:
    return tool_def(fn).name


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 4 * EVENT_TIMEOUT))


def test_progress_reaches_on_status_never_a_turn_and_a_new_stream_gets_the_latest(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    require(server, "SessionEvents")
    gate = threading.Event()

    @async_tool(name=unique("crawl"))
    def crawl(pages: int) -> str:
        for page in range(1, pages + 1):
            report_progress(page, pages, f"page {page}", {"page": page})
        gate.wait(EVENT_TIMEOUT)
        return "crawled"

    start_worker(crawl)

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            model, statuses = ScriptedModel(), Statuses()
            async with AsyncAgent(model, client, on_status=statuses, batch_window=0) as agent:
                ack = await agent.submit(name_of(crawl), pages=5)
                # Latest wins: the fifth report arrives, coalesced or not.
                await statuses.until(
                    lambda: any(p.detail == {"page": 5} for p in statuses.items("progress"))
                )
                # A stream opened mid-task starts with the task's latest progress.
                async with client.session_events() as fresh:
                    first = await asyncio.wait_for(fresh.__anext__(), EVENT_TIMEOUT)
                assert isinstance(first, Progress)
                assert (first.task_id, first.index, first.detail) == (ack.task_id, 5, {"page": 5})
                gate.set()
                message = await model.turn(1)
                assert ack.task_id in message
                await statuses.until(lambda: statuses.count("delivered") == 1)
            reports = statuses.items("progress")
            assert 1 <= len(reports) <= 5
            assert [p.index for p in reports] == sorted({p.index for p in reports})
            assert all(p.task_id == ack.task_id and p.total == 5 for p in reports)
            last_progress = max(i for i, (s, _) in enumerate(statuses.seen) if s == "progress")
            delivered = next(i for i, (s, _) in enumerate(statuses.seen) if s == "delivered")
            assert last_progress < delivered  # none after its completion
            assert model.turns == [message]  # progress never took a turn

    run(scenario)


def test_a_lost_worker_s_last_detail_reaches_the_next_attempt(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    require(server, "SessionEvents")
    first_running = threading.Event()
    resumes: list[Any] = []

    @async_tool(name=unique("long_job"))
    def long_job() -> str:
        ctx = current_task()
        assert ctx is not None
        resumes.append(ctx.resume_detail)
        if len(resumes) == 1:
            ctx.report_progress(1, 2, "half way", {"step": 1})
            first_running.set()
            ctx.cancelled.wait(EVENT_TIMEOUT)  # until its worker goes away
            return "first"
        return f"resumed from step {ctx.resume_detail['step']}"

    first = start_worker(long_job)
    with Client(server, session_id=unique("session")) as client:
        ack = client.submit(name_of(long_job))
        assert first_running.wait(EVENT_TIMEOUT)
        with client.session_events() as events:  # the server holds the detail now
            seen = next(e for e in events if isinstance(e, Progress))
        assert seen.detail == {"step": 1}
        first.stop()
        start_worker(long_job)
        assert client.result(ack.task_id, timeout=EVENT_TIMEOUT) == "resumed from step 1"
    assert resumes == [None, {"step": 1}]


def test_delivery_policies_with_a_busy_agent_offering_interrupt(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    require(server, "SessionEvents")

    @async_tool(name=unique("quiet"), delivery="silent")
    def quiet(n: int) -> int:
        return n

    @async_tool(name=unique("plain"))
    def plain(n: int) -> int:
        return n

    start_worker(quiet, plain)

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            model, statuses = InterruptibleModel(hold=True), Statuses()
            async with AsyncAgent(model, client, on_status=statuses, batch_window=0) as agent:
                silent = await agent.submit(name_of(quiet), n=1)  # SILENT, from the tool
                await statuses.until(lambda: len(agent.silent) == 1)
                assert model.turns == []  # it started no turn
                idle = await agent.submit(name_of(plain), n=2)  # the default: WHEN_IDLE
                assert idle.task_id in await model.turn(1)  # a turn, held open: busy
                urgent = await agent.submit(name_of(quiet), n=3, delivery="interrupt")
                await model.interrupted()
                message, during_turn = model.interrupts[0]
                assert urgent.task_id in message and during_turn
                later = await agent.submit(name_of(plain), n=4)
                await statuses.until(
                    lambda: any(c.task_id == later.task_id for c in statuses.items("queued"))
                )
                assert len(model.turns) == 1
                model.release()
                assert later.task_id in await model.turn(2)  # WHEN_IDLE: after the turn
                model.release()
                model.hold = False
                await agent.send("what now?")
                last = model.turns[2]
                assert last.endswith("what now?")
                assert 0 <= last.index(silent.task_id) < last.index("what now?")
                by_task = {c.task_id: c.delivery for c in agent.delivered}
            assert by_task == {
                silent.task_id: DeliveryPolicy.SILENT,  # the tool's
                idle.task_id: DeliveryPolicy.WHEN_IDLE,  # the default
                urgent.task_id: DeliveryPolicy.INTERRUPT,  # the submit's beats the tool's
                later.task_id: DeliveryPolicy.WHEN_IDLE,
            }

    run(scenario)


def test_the_digest_lists_the_pending_calls_and_empties_once_acknowledged(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    require(server, "PendingDigest")
    gates = {k: threading.Event() for k in ("a", "b", "c")}

    @async_tool(name=unique("wait_for"))
    def wait_for(key: str) -> str:
        gates[key].wait(EVENT_TIMEOUT)
        return f"done {key}"

    start_worker(wait_for, max_concurrency=4)

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            model, statuses = ScriptedModel(), Statuses()
            async with AsyncAgent(model, client, on_status=statuses, batch_window=0) as agent:
                acks = [await agent.submit(name_of(wait_for), key=k) for k in "abc"]
                digest = await client.pending_digest()
                assert {t.task_id for t in digest.pending} == {a.task_id for a in acks}
                assert digest.pending_count == 3 and name_of(wait_for) in digest.text
                acked: asyncio.Queue[int] = asyncio.Queue()
                ack = client.ack_completions

                async def ack_and_tell(up_to_seq: int, **kw: Any) -> int:
                    removed = await ack(up_to_seq, **kw)
                    acked.put_nowait(up_to_seq)
                    return removed

                client.ack_completions = ack_and_tell  # type: ignore[method-assign]
                for n, key in enumerate("abc", 1):
                    gates[key].set()
                    await model.turn(n)
                    assert await asyncio.wait_for(acked.get(), EVENT_TIMEOUT) == n
                done = await client.pending_digest()
                assert (done.text, done.pending, done.unacknowledged) == ("", [], 0)
                assert done.acked_seq == done.last_seq == agent.acked_seq
                # The digest led the first turn, while two calls were still pending.
                result = agent.delivered[0].message
                before = model.turns[0][: model.turns[0].index(result)]
                assert name_of(wait_for) in before or acks[1].task_id in before
                history = [{"role": "user", "content": m} for m in model.turns]
                pruned = agent.prune(history, keep_results=1)
                assert acks[2].task_id in pruned[2]["content"]  # the last one is kept
                assert "pruned" in pruned[0]["content"] and "pruned" in pruned[1]["content"]
            # A replay after the ack leaves the acknowledged completions out (the agent
            # is closed now, so that it does not acknowledge the new one first).
            again = await client.submit(name_of(wait_for), key="a")
            async with client.session_events(after_seq=0) as replay:
                first = await asyncio.wait_for(replay.__anext__(), EVENT_TIMEOUT)
            assert isinstance(first, Completion) and first.task_id == again.task_id

    run(scenario)


def big_text(size: int) -> str:
    """At least `size` bytes of UTF-8 with multi-byte characters throughout."""
    parts, total, n = [], 0, 0
    while total < size:
        line = f"errand résultat 結果 {n:08d}\n"
        parts.append(line)
        total += len(line.encode())
        n += 1
    return "".join(parts)


def test_a_large_result_arrives_as_a_preview_and_pages_back_byte_for_byte(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    require(server, "ReadResult")
    value = big_text(1 << 20)

    @async_tool(name=unique("report"))
    def report(summarize: bool = False) -> Any:
        return Summarized(value, "a one-line summary") if summarize else value

    start_worker(report)
    expected = json.dumps(value, ensure_ascii=False).encode()
    client = Client(server, session_id=unique("session"))
    with client, client.completions() as completions:
        plain = client.submit(name_of(report))
        done = next(completions)
        assert done.task_id == plain.task_id
        assert done.result_truncated and done.result_json in (None, "")
        assert done.result_bytes == len(expected)
        assert 0 < len(done.result_preview.encode()) <= 16 * 1024  # the default budget
        assert str(len(expected)) in done.message  # the full size, and how to read it
        full = client.read_full_result(plain.task_id, chunk_bytes=100_000)
        assert hashlib.sha256(full.encode()).digest() == hashlib.sha256(expected).digest()
        assert client.result(plain.task_id) == value  # result() reads past the preview
        summed = client.submit(name_of(report), summarize=True)
        done = next(completions)
        assert done.task_id == summed.task_id and done.result_preview == "a one-line summary"
        whole = client.submit(name_of(report), result_budget_bytes=2 << 20)
        done = next(completions)
        assert done.task_id == whole.task_id
        assert not done.result_truncated and done.result == value


def test_results_by_reference_keep_result_json_off_the_stream(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    require(server, "SessionEvents")
    require(server, "ReadResult")

    @async_tool(name=unique("small"))
    def small() -> dict[str, str]:
        return {"answer": "forty-two"}

    start_worker(small)
    client = Client(server, session_id=unique("session"))
    with client, client.session_events(results_by_reference=True) as events:
        ack = client.submit(name_of(small))
        done = next(e for e in events if isinstance(e, Completion))
        assert done.task_id == ack.task_id and done.result_json in (None, "")
        text = client.read_full_result(ack.task_id)
        assert done.result_bytes == len(text.encode()) and json.loads(text) == {
            "answer": "forty-two"
        }


def test_identical_calls_in_flight_are_joined(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    require(server, "ReadResult")
    gate = threading.Event()
    runs: list[int] = []

    @async_tool(name=unique("lookup"))
    def lookup(a: int, b: int) -> int:
        runs.append(a + b)
        gate.wait(EVENT_TIMEOUT)
        return a + b

    start_worker(lookup)
    with Client(server, session_id=unique("session")) as client:
        orders = [{"a": 1, "b": 2}, {"b": 2, "a": 1}] * 10
        with ThreadPoolExecutor(8) as pool:
            acks = list(
                pool.map(
                    lambda args: client.submit(name_of(lookup), args, dedup="join_in_flight"),
                    orders,
                )
            )
        assert len({a.task_id for a in acks}) == 1
        assert sum(a.joined for a in acks) == 19
        gate.set()
        assert client.result(acks[0].task_id, timeout=EVENT_TIMEOUT) == 3
        off = client.submit(name_of(lookup), {"a": 1, "b": 2})  # the tool's: OFF
        assert off.task_id != acks[0].task_id and not off.joined
        assert client.result(off.task_id, timeout=EVENT_TIMEOUT) == 3
    assert runs == [3, 3]


def test_a_fallback_tool_answers_a_failure(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    require(server, "ReadResult")

    @async_tool(name=unique("backup"))
    def backup(q: str) -> str:
        return f"backup {q}"

    @async_tool(name=unique("flaky"))
    def flaky(q: str) -> str:
        raise RuntimeError("the primary is down")

    start_worker(backup, flaky)
    client = Client(server, session_id=unique("session"))
    with client, client.completions() as completions:
        ack = client.submit(name_of(flaky), q="x", fallback_tool=name_of(backup))
        done = next(completions)
    assert done.task_id == ack.task_id
    assert done.status == TaskStatus.SUCCEEDED and done.result == "backup x"
    assert done.fallback is not None and done.fallback.tool == name_of(backup)
    assert done.fallback.primary_status == TaskStatus.FAILED
    assert done.message  # the server says a fallback answered, and why


def test_the_model_cancels_with_a_reason_only_where_allowed(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    require(server, "SessionEvents")
    running: dict[str, threading.Event] = {"soft": threading.Event(), "firm": threading.Event()}
    reasons: dict[str, str] = {}
    # The server ends a cancelled task at once; its tool sees the cancel later.
    seen = threading.Event()

    def body(kind: str) -> str:
        ctx = current_task()
        assert ctx is not None
        running[kind].set()
        ctx.cancelled.wait(EVENT_TIMEOUT)
        reasons[kind] = ctx.cancel_reason
        if kind == "soft":
            seen.set()
        return "stopped"

    @async_tool(name=unique("soft"), cancellable_by_model=True)
    def soft() -> str:
        return body("soft")

    @async_tool(name=unique("firm"))
    def firm() -> str:
        return body("firm")

    start_worker(soft, firm)

    async def scenario() -> None:
        with Client(server, session_id=unique("session")) as client:
            tools = {t.name: t for t in session_tools(client)}
            with client.session_events(include_progress=False) as events:
                a, b = client.submit(name_of(soft)), client.submit(name_of(firm))
                assert running["soft"].wait(EVENT_TIMEOUT) and running["firm"].wait(EVENT_TIMEOUT)
                cancel = tools["errand_cancel"]
                ok, text = await run_session_tool(
                    cancel, {"task_id": a.task_id, "reason": "the user moved on"}
                )
                assert ok and json.loads(text)["status"] == "CANCELLED", text
                ok, text = await run_session_tool(cancel, {"task_id": b.task_id, "reason": "no"})
                assert not ok and "cancellable_by_model" in text
                done = next(e for e in events if isinstance(e, Completion))
                assert done.task_id == a.task_id and done.status == TaskStatus.CANCELLED
                assert "the user moved on" in done.message
                client.cancel(b.task_id)
        assert seen.wait(EVENT_TIMEOUT), "the tool never saw its cancel"
        assert reasons["soft"] == "cancelled: the user moved on"

    run(scenario)
