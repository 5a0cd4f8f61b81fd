"""What `Task` carries from the proto's `Task` message."""

from __future__ import annotations

from errand.types import TaskStatus, completion_from_pb, task_from_pb, tool_from_pb
from errand.v1 import errand_pb2 as pb


def test_a_task_a_fallback_answered_says_what_answered() -> None:
    # GetTask's Task had no fallback: a call a fallback answered read as the
    # tool's own success (its completion said otherwise).
    msg = pb.Task(
        task_id="t1",
        status=pb.TASK_STATUS_SUCCEEDED,
        result_json='{"answer": 42}',
        fallback=pb.FallbackUsed(
            primary_status=pb.TASK_STATUS_FAILED,
            primary_error=pb.ToolError(code="upstream_down", message="503"),
            tool="backup",
            task_id="t2",
        ),
    )
    task = task_from_pb(msg)
    assert task.status is TaskStatus.SUCCEEDED
    assert task.fallback is not None
    assert (task.fallback.tool, task.fallback.task_id) == ("backup", "t2")
    assert task.fallback.primary_status is TaskStatus.FAILED
    assert task.fallback.primary_error is not None
    assert task.fallback.primary_error.code == "upstream_down"
    assert task_from_pb(pb.Task(task_id="t3")).fallback is None


def test_a_result_the_message_does_not_repeat_follows_it_for_the_model() -> None:
    # Over 64 KiB the server's message does not repeat the result; within the
    # call's budget it is inline, and the model saw only the sentence.
    big = '"' + "x" * 70_000 + '"'
    msg = pb.Completion(
        seq=1,
        task_id="t1",
        tool="fetch",
        status=pb.TASK_STATUS_SUCCEEDED,
        result_json=big,
        result_bytes=len(big),
        message="Async result for task t1 (tool `fetch`) succeeded. Its result is 70002 bytes.",
    )
    text = completion_from_pb(msg).text()
    assert text.startswith("Async result for task t1") and text.endswith(big)
    small = pb.Completion(
        seq=2,
        task_id="t2",
        tool="fetch",
        status=pb.TASK_STATUS_SUCCEEDED,
        result_json="[1]",
        message="Async result for task t2 (tool `fetch`) succeeded: [1]",
    )
    assert completion_from_pb(small).text() == small.message
    by_reference = pb.Completion(
        seq=3,
        task_id="t3",
        tool="fetch",
        status=pb.TASK_STATUS_SUCCEEDED,
        result_bytes=70_002,
        message="... the errand_read_result tool reads it ...",
    )
    assert completion_from_pb(by_reference).text() == by_reference.message


def test_every_output_field_of_task_and_tool_is_carried() -> None:
    # Task dropped worker_id, worker_name and retry_of; ToolInfo dropped
    # queued and running.
    task = task_from_pb(
        pb.Task(task_id="t1", worker_id="7", worker_name="crawler-1", retry_of="t0")
    )
    assert (task.worker_id, task.worker_name, task.retry_of) == ("7", "crawler-1", "t0")
    tool = tool_from_pb(pb.Tool(name="fetch", workers=2, queued=3, running=1))
    assert (tool.workers, tool.queued, tool.running) == (2, 3, 1)
