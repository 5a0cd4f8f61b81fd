"""A server that answers RESOURCE_EXHAUSTED is waited out, not given up on.

A server at its limit of connected workers (--max-workers-per-tenant, here
1) refuses one more worker's stream with RESOURCE_EXHAUSTED: "try later".
The worker says so at WARNING, with when it tries again, and connects again
with its (bounded) backoff until a slot is free, as the Go SDK's worker
does; it does not stop. Errors retrying cannot fix (UNAUTHENTICATED,
PERMISSION_DENIED, INVALID_ARGUMENT on registration) still stop it: see
test_auth_tls.py and test_worker.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest

from errand import Client, Worker, async_tool
from errand._common import Backoff

from .conftest import EVENT_TIMEOUT, ServerProcess, Watch, unique, watching


@pytest.fixture
def watch() -> Iterator[Watch]:
    yield from watching("errand.worker")


@pytest.fixture
def one_worker_server(server_factory: Callable[..., ServerProcess]) -> str:
    """A server that lets one worker connect at a time."""
    proc = server_factory(
        "--listen", "127.0.0.1:0", "--store", "memory", "--max-workers-per-tenant", "1"
    )
    return proc.start()


def tool(prefix: str) -> Callable[..., Any]:
    @async_tool(name=unique(prefix))
    def echo(text: str) -> str:
        """Echo."""
        return text

    return echo


def name_of(fn: Callable[..., Any]) -> str:
    return str(fn.__errand_tool__.name)  # type: ignore[attr-defined]


def test_a_worker_over_the_limit_waits_for_a_slot_in_its_thread(
    one_worker_server: str, watch: Watch
) -> None:
    address = one_worker_server
    first = Worker(address, tools=[tool("first")]).start(timeout=EVENT_TIMEOUT)
    late = tool("late")
    second = Worker(address, tools=[late], backoff=Backoff(0.05, 0.5), name="second")
    raised: list[BaseException] = []

    def start() -> None:
        try:
            second.start(timeout=EVENT_TIMEOUT)  # waits until registered
        except BaseException as exc:
            raised.append(exc)
            watch.ended(exc)

    starting = threading.Thread(target=start, daemon=True)
    starting.start()
    try:
        said = watch.warning("RESOURCE_EXHAUSTED")
        assert "limit is 1" in said, said  # the server's words
        assert address in said and "again in" in said, said
        first.stop()  # frees the slot
        starting.join(EVENT_TIMEOUT)
        assert not starting.is_alive() and not raised, raised
        assert second.error is None
        with Client(address, session_id=unique("session")) as client:
            assert client.submit(name_of(late), text="hi", wait=True) == "hi"
    finally:
        first.stop()
        second.stop()


def test_a_worker_over_the_limit_waits_for_a_slot_in_asyncio(
    one_worker_server: str, watch: Watch
) -> None:
    address = one_worker_server
    first = Worker(address, tools=[tool("first")]).start(timeout=EVENT_TIMEOUT)
    late = tool("late")
    second = Worker(address, tools=[late], backoff=Backoff(0.05, 0.5), name="second")

    async def scenario() -> None:
        running = asyncio.ensure_future(second.run_async())

        def seen(task: asyncio.Future[None]) -> None:
            error: Optional[BaseException] = (
                asyncio.CancelledError() if task.cancelled() else task.exception()
            )
            watch.ended(error or RuntimeError("run_async returned"))

        running.add_done_callback(seen)
        try:
            said = await asyncio.to_thread(watch.warning, "RESOURCE_EXHAUSTED")
            assert "limit is 1" in said and "again in" in said, said
            await asyncio.to_thread(first.stop)  # frees the slot
            assert await asyncio.to_thread(second.wait_registered, EVENT_TIMEOUT)
            with Client(address, session_id=unique("session")) as client:
                done = await asyncio.to_thread(client.submit, name_of(late), text="hi", wait=True)
            assert done == "hi"
        finally:
            second.stop()
            await running

    try:
        asyncio.run(scenario())
    finally:
        first.stop()
    assert second.error is None
