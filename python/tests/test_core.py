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
    assert err.message == "no errand server at 127.0.0.1:1: is errand serve running?"
    silent = c.failed(Refused(grpc.StatusCode.DEADLINE_EXCEEDED), "SubmitTool")
    assert isinstance(silent, Unavailable) and "(no answer in time)" in silent.message
    c.answered()  # once connected, a restart is the caller's ordinary Unavailable
    later = c.failed(Refused(grpc.StatusCode.UNAVAILABLE), "SubmitTool")
    assert later.message == "failed to connect to all addresses"


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
