"""`TaskStatus` and the policy enums print by name and still compare as ints."""

from __future__ import annotations

import pytest

from errand import DedupPolicy, DeliveryPolicy, TaskStatus


@pytest.mark.parametrize(
    "member, name",
    [
        (TaskStatus.RUNNING, "RUNNING"),
        (TaskStatus.TIMED_OUT, "TIMED_OUT"),
        (DeliveryPolicy.INTERRUPT, "INTERRUPT"),
        (DedupPolicy.JOIN_IN_FLIGHT, "JOIN_IN_FLIGHT"),
    ],
)
def test_str_and_format_give_the_name(member: object, name: str) -> None:
    assert str(member) == name
    assert f"{member}" == name
    assert "%s" % member == name  # noqa: UP031
    assert f"{member:>12}" == f"{name:>12}"  # a text spec pads the name


def test_they_are_still_ints() -> None:
    assert TaskStatus.RUNNING == 2 and TaskStatus(2) is TaskStatus.RUNNING
    assert TaskStatus.QUEUED < TaskStatus.RUNNING < 3
    assert TaskStatus.SUCCEEDED.finished and not TaskStatus.RUNNING.finished
    assert int(TaskStatus.FAILED) == 4 and f"{TaskStatus.FAILED:d}" == "4"
    assert f"{TaskStatus.CANCELLED:03d}" == "005"
    assert repr(TaskStatus.RUNNING) == "<TaskStatus.RUNNING: 2>"
    assert {TaskStatus.RUNNING: "x"}[2] == "x"  # hashes as its int
