"""The sans-IO core both clients share: request building and the stream cursor."""

from __future__ import annotations

import grpc

from errand._common import Backoff, connection
from errand._core import ClientCore, Step, StreamCursor
from errand.errors import Unavailable
from errand.v1 import errand_pb2 as pb


def core() -> ClientCore:
    return ClientCore(
        connection("127.0.0.1:1", token=""),
        session_id="s1",
        timeout=2.0,
        wait_for_ready=True,
        connect_timeout=5.0,
    )


def test_calls_name_their_rpc_and_decode_the_answer() -> None:
    c = core()
    call = c.submit("echo", {"a": 1}, {"b": 2}, session_id=None, timeout_ms=5, idempotency_key="k")
    assert call.method == "SubmitTool"
    assert (call.request.session_id, call.request.tool) == ("s1", "echo")
    assert call.request.arguments_json == '{"a":1,"b":2}'
    assert (call.request.timeout_ms, call.request.idempotency_key) == (5, "k")
    assert c.ack_completions(7, "other").request.session_id == "other"
    assert c.ack_completions(7, None).decode(pb.AckCompletionsResponse(removed=3)) == 3
    # The first call does not wait for a server, so that a missing one fails fast.
    assert c.call_options() == {"timeout": 2.0, "metadata": (), "wait_for_ready": False}
    c.answered()
    assert c.call_options() == {"timeout": 2.0, "metadata": (), "wait_for_ready": True}


class Refused(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "failed to connect to all addresses"


def test_a_first_call_that_finds_no_server_says_so() -> None:
    c = core()
    err = c.failed(Refused(grpc.StatusCode.UNAVAILABLE), "SubmitTool")
    assert isinstance(err, Unavailable)
    assert err.message == (
        "no errand server at 127.0.0.1:1: is errand serve running? If it serves TLS "
        "(errand serve --tls-cert), give the CA that signed its certificate with tls_ca= or "
        "ERRAND_TLS_CA"
    )
    silent = c.failed(Refused(grpc.StatusCode.DEADLINE_EXCEEDED), "SubmitTool")
    assert isinstance(silent, Unavailable) and "(no answer in time)" in silent.message
    c.answered()  # once connected, a restart is the caller's ordinary Unavailable
    later = c.failed(Refused(grpc.StatusCode.UNAVAILABLE), "SubmitTool")
    assert isinstance(later, Unavailable)
    assert later.message == (
        "the errand server at 127.0.0.1:1 could not be reached (failed to connect to all "
        "addresses): it may be down or restarting"
    )


def test_cursor_resumes_after_the_last_seq_and_drops_replays() -> None:
    cursor = StreamCursor("s1", 4)
    assert cursor.request().after_seq == 4
    assert cursor.accept(pb.Completion(seq=3, task_id="old")) is None
    got = cursor.accept(pb.Completion(seq=5, task_id="t5"))
    assert got is not None and got.task_id == "t5"
    assert cursor.accept(pb.Completion(seq=5, task_id="t5")) is None
    assert cursor.request().after_seq == 5


def test_cursor_retry_decisions() -> None:
    cursor = StreamCursor("s1", 0, backoff=Backoff(0.1, 0.4))
    assert cursor.failed(grpc.StatusCode.UNAVAILABLE, closed=False) is Step.RETRY
    assert cursor.ended(closed=False) is Step.RETRY
    assert cursor.reconnects == 2
    assert cursor.failed(grpc.StatusCode.PERMISSION_DENIED, closed=False) is Step.RAISE
    assert cursor.failed(grpc.StatusCode.UNAVAILABLE, closed=True) is Step.STOP
    assert cursor.ended(closed=True) is Step.STOP
    assert cursor.reconnects == 2
    no_reconnect = StreamCursor("s1", 0, reconnect=False)
    assert no_reconnect.ended(closed=False) is Step.STOP
    assert no_reconnect.failed(grpc.StatusCode.UNAVAILABLE, closed=False) is Step.RAISE


def test_cursor_backoff_grows_and_resets_on_a_completion() -> None:
    cursor = StreamCursor("s1", 0, backoff=Backoff(0.1, 0.4))
    delays = [cursor.delay() for _ in range(4)]
    assert 0.05 <= delays[0] <= 0.1 and 0.2 <= delays[3] <= 0.4
    cursor.accept(pb.Completion(seq=1))
    assert cursor.delay() <= 0.1


def test_submit_options_fill_the_request_and_refuse_bad_values() -> None:
    from errand._common import SubmitOptions
    from errand.errors import InvalidArgument

    c = core()
    opts = SubmitOptions("interrupt", "join_in_flight", 4096, "backup", 0)
    req = c.submit("echo", {}, {}, session_id=None, timeout_ms=0, idempotency_key="", options=opts)
    assert (req.request.delivery, req.request.dedup) == (
        pb.DELIVERY_POLICY_INTERRUPT,
        pb.DEDUP_POLICY_JOIN_IN_FLIGHT,
    )
    assert req.request.result_budget_bytes == 4096
    assert req.request.fallback.WhichOneof("kind") == "tool"
    assert req.request.fallback.tool == "backup"
    stale = SubmitOptions(fallback_last_good_max_age_ms=60_000)
    req = c.submit("echo", {}, {}, session_id=None, timeout_ms=0, idempotency_key="", options=stale)
    assert req.request.fallback.last_good_max_age_ms == 60_000
    assert req.request.delivery == pb.DELIVERY_POLICY_UNSPECIFIED
    for bad, words in [
        (SubmitOptions(delivery="loud"), "delivery must be one of"),
        (SubmitOptions(dedup=7), "dedup must be one of"),
        (SubmitOptions(result_budget_bytes=-1), "result_budget_bytes"),
        (SubmitOptions(fallback_tool="b", fallback_last_good_max_age_ms=5), "exactly one"),
    ]:
        try:
            c.submit("echo", {}, {}, session_id=None, timeout_ms=0, idempotency_key="", options=bad)
        except InvalidArgument as exc:
            assert words in exc.message
        else:
            raise AssertionError(f"{bad} was accepted")


def test_cancel_reason_and_the_new_unary_calls() -> None:
    from errand.errors import InvalidArgument

    c = core()
    call = c.cancel("t1", "the user changed their mind")
    assert (call.method, call.request.reason) == ("CancelTask", "the user changed their mind")
    try:
        c.cancel("t1", "x" * 1025)
    except InvalidArgument as exc:
        assert "at most 1024 bytes" in exc.message
    else:
        raise AssertionError("a 1025-byte reason was accepted")
    digest = c.pending_digest(None, 0)
    assert (digest.method, digest.request.session_id) == ("PendingDigest", "s1")
    answer = pb.PendingDigestResponse(
        pending=[pb.Task(task_id="t2", progress=pb.Progress(task_id="t2", index=3))],
        last_seq=9,
        acked_seq=4,
        text="1 pending",
        unacknowledged=5,
        pending_count=1,
    )
    got = digest.decode(answer)
    assert (got.text, got.last_seq, got.acked_seq, got.unacknowledged) == ("1 pending", 9, 4, 5)
    assert got.pending[0].progress is not None and got.pending[0].progress.index == 3
    read = c.read_result("t1", 10, 20)
    assert (read.method, read.request.offset, read.request.max_bytes) == ("ReadResult", 10, 20)


def test_event_cursor_passes_progress_and_falls_back_to_completions() -> None:
    from errand._core import EventCursor
    from errand.types import Completion, Progress

    cursor = EventCursor("s1", 2, include_progress=True, results_by_reference=True, fallback=True)
    assert cursor.method == "SessionEvents"
    req = cursor.request()
    assert (req.after_seq, req.include_progress, req.results_by_reference) == (2, True, True)
    p = cursor.accept(pb.SessionEvent(progress=pb.Progress(task_id="t", index=1, total=5)))
    assert isinstance(p, Progress) and p.index == 1 and p.fraction == 0.0
    c = cursor.accept(pb.SessionEvent(completion=pb.Completion(seq=3, delivery=2)))
    assert isinstance(c, Completion) and c.seq == 3 and c.delivery.name == "INTERRUPT"
    assert cursor.accept(pb.SessionEvent(completion=pb.Completion(seq=3))) is None
    # A server without SessionEvents: follow Completions from the same seq, at once.
    assert cursor.failed(grpc.StatusCode.UNIMPLEMENTED, closed=False) is Step.FALLBACK
    assert cursor.method == "Completions" and cursor.request().after_seq == 3
    again = cursor.accept(pb.Completion(seq=4))
    assert isinstance(again, Completion) and again.seq == 4
    strict = EventCursor("s1", 0)
    assert strict.failed(grpc.StatusCode.UNIMPLEMENTED, closed=False) is Step.RAISE


def test_result_pager_rebuilds_the_text_and_checks_offsets() -> None:
    from errand._core import ResultPager
    from errand.types import ResultChunk

    text = "héllo wörld, " * 5
    raw = text.encode()
    pager = ResultPager(core(), "t1", 8, 1 << 20)
    while not pager.done:
        call = pager.call()
        start = call.request.offset
        end = min(len(raw), start + 8)
        while end < len(raw) and (raw[end] & 0xC0) == 0x80:  # a character boundary
            end -= 1
        pager.accept(ResultChunk(raw[start:end].decode(), start, len(raw), end == len(raw)))
    assert pager.text() == text
    small = ResultPager(core(), "t1", 0, 4)
    try:
        small.accept(ResultChunk("abc", 0, 10, False))
    except ValueError as exc:
        assert "max_total_bytes=4" in str(exc)
    else:
        raise AssertionError("an oversized result was accepted")
