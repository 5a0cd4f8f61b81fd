"""One rule for every JSON text (issue 15): a worker's result follows the rule
a submit's arguments do. A result nested deeper than 128 levels ends FAILED
with `invalid_result`, so `Completion.result` only ever decodes texts within
the documented depth, far from Python's recursion limit."""

from __future__ import annotations

from typing import Callable

import pytest

from errand import Client, InvalidArgument, TaskContext, TaskFailed, TaskStatus, Worker, async_tool
from errand.tool import tool_def

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


def test_bytes_results_that_are_not_utf8_fail_not_corrupted(
    client: Client,
    start_worker: Callable[..., Worker],
    collect: Callable[..., Collector],
) -> None:
    @async_tool(name=unique("raw"))
    def raw(utf8: bool) -> bytes:
        """Return bytes."""
        return b"ok \xc3\xa9" if utf8 else b"\x00\xffabc"

    name = raw.__errand_tool__.name  # type: ignore[attr-defined]
    start_worker(raw)
    stream = collect(client.completions())
    client.submit(name, utf8=False)
    (bad,) = stream.take(1)
    assert bad.status is TaskStatus.FAILED, bad.result  # was '\x00\ufffdabc'
    assert bad.error is not None and bad.error.code == "invalid_result"
    assert "not UTF-8" in bad.error.message
    client.submit(name, utf8=True)
    (good,) = stream.take(1)
    assert good.result == "ok \u00e9"


def test_bytes_that_are_not_utf8_are_refused_in_the_words_of_their_place(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    """An argument, a result and a progress detail each name where the
    bytes are, and what to do with them; none says "before returning them"
    (an argument is not returned, a detail is reported)."""
    raw = b"\x00\xffabc"
    with Client("127.0.0.1:1") as nowhere, pytest.raises(InvalidArgument) as refused:
        nowhere.submit("tool", {"data": [raw]})  # refused before any call
    said = str(refused.value)
    assert "argument data[0] is not JSON: bytes that are not UTF-8 text" in said, said
    assert "base64" in said and "returning" not in said, said

    ctx = TaskContext("t1", "s1", "crawl", 1, 0, _send=lambda msg: None)
    with pytest.raises(ValueError) as refused_detail:
        ctx.report_progress(detail={"blob": raw})
    said = str(refused_detail.value)
    assert "progress detail['blob'] is not JSON: bytes that are not UTF-8 text" in said, said
    assert "base64" in said and "returning" not in said, said

    @async_tool(name=unique("blob"))
    def blob() -> object:
        return {"blob": raw}

    start_worker(blob)
    with pytest.raises(TaskFailed) as failed:
        client.submit(tool_def(blob).name, wait=True)
    said = failed.value.message
    assert failed.value.code == "invalid_result", said
    assert "result['blob'] is not JSON: bytes that are not UTF-8 text" in said, said
    assert "base64" in said, said
