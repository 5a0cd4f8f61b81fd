"""A completion stream the server refuses for now is waited out, not given up on.

A server at its limit of open streams (--max-streams-per-tenant, here 1)
refuses one more `Completions` or `SessionEvents` stream with
RESOURCE_EXHAUSTED: "try later". The stream says so at WARNING (logger
`errand.client`: the code, the server's words and when it tries again) and
opens again with its bounded backoff until a slot is free, as the Go SDK's
completion stream does and the Python worker does for its own stream
(`errand._retry.transient` decides for both). Errors retrying cannot fix
still end the iteration with the SDK's error and the server's message.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from typing import Any, Callable, Union

import pytest

from errand import AsyncClient, Client, Completion, OutOfRange, Worker, async_tool
from errand._common import Backoff

from .conftest import EVENT_TIMEOUT, Collector, ServerProcess, Watch, unique, watching


@pytest.fixture
def watch() -> Iterator[Watch]:
    yield from watching("errand.client")


@pytest.fixture
def one_stream_server(server_factory: Callable[..., ServerProcess]) -> str:
    """A server that lets one completion stream be open at a time."""
    proc = server_factory(
        "--listen", "127.0.0.1:0", "--store", "memory", "--max-streams-per-tenant", "1"
    )
    return proc.start()


@pytest.fixture
def echo_worker(one_stream_server: str) -> Iterator[str]:
    """A worker serving an echo tool on the server; yields the tool's name."""
    name = unique("echo")

    @async_tool(name=name)
    def echo(text: str) -> str:
        """Echo."""
        return text

    worker = Worker(one_stream_server, tools=[echo]).start(timeout=EVENT_TIMEOUT)
    yield name
    worker.stop()


def test_a_completion_stream_over_the_limit_waits_for_a_slot(
    one_stream_server: str,
    echo_worker: str,
    watch: Watch,
    collect: Callable[..., Collector],
) -> None:
    session = unique("session")
    with Client(one_stream_server, session_id=session) as client:
        first = collect(client.completions())
        task_id = client.submit(echo_worker, text="hi").task_id
        (seen,) = first.take(1)  # the first stream holds the one slot
        assert seen.task_id == task_id

        second = client.completions(backoff=Backoff(0.05, 0.5))
        got: queue.Queue[Union[Completion, BaseException]] = queue.Queue()

        def read() -> None:
            try:
                got.put(next(second))
            except BaseException as exc:
                got.put(exc)
                watch.ended(exc)

        threading.Thread(target=read, daemon=True).start()
        try:
            said = watch.warning("RESOURCE_EXHAUSTED")
            assert "limit is 1" in said, said  # the server's words
            assert "Completions" in said and session in said and "again in" in said, said
            first.close()  # frees the slot
            item = got.get(timeout=EVENT_TIMEOUT)
            assert isinstance(item, Completion), item
            assert item.task_id == task_id  # replayed: not acked
            assert second.reconnects >= 1
        finally:
            second.close()


def test_a_session_event_stream_over_the_limit_waits_for_a_slot_in_asyncio(
    one_stream_server: str, echo_worker: str, watch: Watch
) -> None:
    session = unique("session")

    async def scenario() -> None:
        async with AsyncClient(one_stream_server, session_id=session) as client:
            first = client.session_events()
            task_id = (await client.submit(echo_worker, text="hi")).task_id
            seen: Any = await asyncio.wait_for(first.__anext__(), EVENT_TIMEOUT)
            assert isinstance(seen, Completion) and seen.task_id == task_id

            second = client.session_events(backoff=Backoff(0.05, 0.5))
            reading = asyncio.ensure_future(second.__anext__())

            def ended(task: asyncio.Future[Any]) -> None:
                if task.cancelled():
                    watch.ended(asyncio.CancelledError())
                elif task.exception() is not None:
                    watch.ended(task.exception())  # type: ignore[arg-type]

            reading.add_done_callback(ended)
            try:
                said = await asyncio.to_thread(watch.warning, "RESOURCE_EXHAUSTED")
                assert "limit is 1" in said and "SessionEvents" in said, said
                assert session in said and "again in" in said, said
                await first.aclose()  # frees the slot
                item = await asyncio.wait_for(reading, EVENT_TIMEOUT)
                assert isinstance(item, Completion) and item.task_id == task_id
            finally:
                reading.cancel()
                await second.aclose()

    asyncio.run(scenario())


def test_an_error_retrying_cannot_fix_still_ends_the_stream(one_stream_server: str) -> None:
    with Client(one_stream_server, session_id=unique("session")) as client:
        with client.completions(after_seq=1_000) as stream, pytest.raises(OutOfRange) as ended:
            next(stream)
        assert "1000" in str(ended.value), ended.value
