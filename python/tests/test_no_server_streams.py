"""A completion stream's first connect fails fast, as every first call does.

With no server at the address, iterating `completions()` or
`session_events()` (blocking or asyncio) raises `Unavailable("no errand
server at ADDR: is errand serve running?")` at once instead of waiting for
ever, and so does starting an `AsyncAgent` or a `SyncAgent` on such a
client. A stream that has reached a server keeps retrying after losing it
(tests/test_reconnect.py).

Each blocking iteration runs on a thread that the test joins with a bound,
so that the old behaviour (waiting for ever) fails the test rather than hangs it.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from errand import (
    AsyncAgent,
    AsyncClient,
    AsyncToolManager,
    Client,
    SyncAgent,
    Unavailable,
    Worker,
    async_tool,
)
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, Quiet, ServerProcess, free_port, unique

FAST_S = 2.0  # "fails fast": far below any wait for a server


def no_server() -> str:
    return f"127.0.0.1:{free_port()}"  # a port nothing listens on


def outcome_within(fn: Callable[[], Any], bound: float) -> BaseException:
    """Runs `fn` on a thread; the exception it raised within `bound` seconds."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"still waiting after {bound}s (no server)"
    assert caught, "returned without an error (no server)"
    assert time.monotonic() - started < bound
    return caught[0]


def assert_no_server(exc: BaseException, address: str) -> None:
    assert isinstance(exc, Unavailable), repr(exc)
    assert f"no errand server at {address}: is errand serve running?" in str(exc)


def test_a_blocking_stream_fails_fast_without_a_server() -> None:
    address = no_server()
    with Client(address, session_id="s") as client:
        assert_no_server(outcome_within(lambda: next(client.completions()), FAST_S), address)
    with Client(address, session_id="s") as client:
        events = client.session_events(fallback=True)
        assert_no_server(outcome_within(lambda: next(events), FAST_S), address)


def test_an_async_stream_fails_fast_without_a_server() -> None:
    address = no_server()

    async def first(events: bool) -> None:
        async with AsyncClient(address, session_id="s") as client:
            stream = client.session_events() if events else client.completions()
            async with stream:
                await stream.__anext__()

    for events in (False, True):
        assert_no_server(outcome_within(lambda e=events: asyncio.run(first(e)), FAST_S), address)


class Model:
    async def send(self, message: str) -> str:
        return "ok"


def test_an_agent_on_a_client_without_a_server_fails_at_start() -> None:
    address = no_server()

    async def start() -> None:
        async with AsyncClient(address, session_id="x") as client, AsyncAgent(Model(), client):
            pass

    assert_no_server(outcome_within(lambda: asyncio.run(start()), FAST_S), address)

    def sync_start() -> None:
        with Client(address, session_id="x") as client:
            SyncAgent(Model(), client).close()

    assert_no_server(outcome_within(sync_start, FAST_S), address)


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"127.0.0.1:{s.getsockname()[1]}"


def test_a_stream_to_an_address_that_never_answers_gives_up(silent_listener: str) -> None:
    # The TCP connection is accepted, the HTTP/2 handshake never answered:
    # bounded by the channel's connect attempt, and at most `connect_timeout`.
    with Client(silent_listener, connect_timeout=0.5) as client:
        exc = outcome_within(lambda: next(client.completions()), FAST_S)
    assert_no_server(exc, silent_listener)


def test_a_server_slow_to_answer_is_waited_for_up_to_connect_timeout(
    silent_listener: str,
) -> None:
    # A server that accepts the connection and has not answered the HTTP/2
    # handshake yet (one starting on a large store, a far TLS server) is
    # waited for until `connect_timeout`, not reported absent after gRPC's
    # first connect attempt: that attempt ended after 100 ms, so the first call
    # and a worker's start said "no errand server" to a server about to answer.
    wait = 2.5
    with Client(silent_listener, connect_timeout=wait) as client:
        exc = outcome_within(client.list_tools, wait + FAST_S)
    assert_no_server(exc, silent_listener)
    assert str(exc).endswith("(no answer in time)"), exc

    @async_tool(name=unique("echo"))
    def echo(x: int) -> int:
        return x

    worker = Worker(silent_listener, tools=[echo])
    exc = outcome_within(lambda: worker.start(timeout=wait), wait + FAST_S)
    assert_no_server(exc, silent_listener)
    assert str(exc).endswith("(no answer in time)"), exc


def test_the_same_client_streams_once_a_server_is_there(
    server_factory: Callable[..., ServerProcess],
) -> None:
    address = no_server()

    @async_tool(name=unique("echo"))
    def echo(x: int) -> int:
        return x

    with Client(address, session_id=unique("session")) as client:
        assert_no_server(outcome_within(lambda: next(client.completions()), FAST_S), address)
        server_factory("--listen", address, "--store", "memory").start()
        worker = Worker(address, tools=[echo]).start(timeout=EVENT_TIMEOUT)
        try:
            ack = client.submit(tool_def(echo).name, x=7)
            with client.completions() as stream:
                done = next(stream)
            assert (done.task_id, done.result) == (ack.task_id, 7)
        finally:
            worker.stop()


def returned_within(fn: Callable[[], Any], bound: float) -> Any:
    """Runs `fn` on a thread; what it returned within `bound` seconds (its
    exception is raised here)."""
    out: list[Any] = []
    caught: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"still running after {bound}s"
    if caught:
        raise caught[0]
    return out[0]


def test_a_blocking_agent_on_an_async_client_starts_once_a_server_is_there(
    server_factory: Callable[..., ServerProcess], quiet: Quiet
) -> None:
    # Blocking code: the client and the agent are made outside any event
    # loop, and the agent runs on a private loop thread. Its first start
    # fails (no server); the same two objects start once a server is there.
    address = no_server()

    @async_tool(name=unique("echo"))
    def echo(x: int) -> int:
        return x

    messages: queue.Queue[str] = queue.Queue()

    class Recorder:
        def send(self, message: str) -> str:
            messages.put(message)
            return "ok"

    client = AsyncClient(address, session_id=unique("session"))
    agent = AsyncAgent(Recorder(), client)
    try:
        assert_no_server(outcome_within(agent.start, FAST_S), address)
        server_factory("--listen", address, "--store", "memory").start()
        worker = Worker(address, tools=[echo]).start(timeout=EVENT_TIMEOUT)
        try:
            assert returned_within(agent.start, EVENT_TIMEOUT) is agent
            ack = returned_within(lambda: agent.submit(tool_def(echo).name, x=7), EVENT_TIMEOUT)
            message = messages.get(timeout=EVENT_TIMEOUT)
            assert ack.task_id in message, message
            assert message.endswith("succeeded: 7"), message
        finally:
            worker.stop()
    finally:
        agent.close()
        asyncio.run(client.close())
    quiet.check()


def test_a_blocking_agent_on_a_manager_starts_once_a_server_is_there(
    server_factory: Callable[..., ServerProcess], quiet: Quiet
) -> None:
    # As above, on an AsyncToolManager: the failed start closed what it had
    # opened (the manager's client and channel, the agent's private loop);
    # the same agent and manager start once a server is there.
    address = no_server()

    @async_tool(name=unique("echo"))
    def echo(x: int) -> int:
        return x

    messages: queue.Queue[str] = queue.Queue()

    class Recorder:
        def send(self, message: str) -> str:
            messages.put(message)
            return "ok"

    manager = AsyncToolManager(max_workers=1, server=address)
    agent = AsyncAgent(Recorder(), manager)
    try:
        assert_no_server(outcome_within(agent.start, FAST_S), address)
        assert manager._client is None  # the failed start's client is closed and gone
        server_factory("--listen", address, "--store", "memory").start()
        manager.add_tool(echo)
        assert returned_within(agent.start, EVENT_TIMEOUT) is agent
        task_id = manager.submit(tool_def(echo).name, x=7)
        message = messages.get(timeout=EVENT_TIMEOUT)
        assert task_id in message, message
        assert message.endswith("succeeded: 7"), message
    finally:
        agent.close()
        manager.stop()
    quiet.check()
