"""One rule for every JSON text (issue 15): a worker's result follows the rule
a submit's arguments do. A result nested deeper than 128 levels ends FAILED
with `invalid_result`, so `Completion.result` only ever decodes texts within
the documented depth, far from Python's recursion limit."""

from __future__ import annotations

from typing import Callable

from errand import Client, TaskStatus, Worker, async_tool

from .conftest import Collector, unique


def nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


def test_results_nested_past_the_limit_fail_and_within_it_decode(
    client: Client,
    start_worker: Callable[..., Worker],
    collect: Callable[..., Collector],
) -> None:
    @async_tool(name=unique("nest"))
    def nest(levels: int) -> object:
        """Return a list nested `levels` deep."""
        return nested(levels)

    name = nest.__errand_tool__.name  # type: ignore[attr-defined]
    start_worker(nest)
    stream = collect(client.completions())
    at_limit = client.submit(name, levels=128)
    (done,) = stream.take(1)
    assert done.task_id == at_limit.task_id
    assert done.status is TaskStatus.SUCCEEDED
    assert done.result == nested(128)

    too_deep = client.submit(name, levels=129)
    (failed,) = stream.take(1)
    assert failed.task_id == too_deep.task_id
    assert failed.status is TaskStatus.FAILED
    assert failed.result is None
    assert failed.error is not None
    assert failed.error.code == "invalid_result"
    assert "deeper than 128 levels" in failed.error.message
