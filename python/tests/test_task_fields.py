"""What `Task` carries from the proto's `Task` message."""

from __future__ import annotations

from errand.types import TaskStatus, task_from_pb
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
