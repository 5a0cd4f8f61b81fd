"""A server's `retry-after-ms` is the wait before the next attempt.

A server with tokens and --requests-per-second-per-tenant refuses a call
past its tenant's rate with RESOURCE_EXHAUSTED, "retry in N ms", and says
N in the `retry-after-ms` trailer. A worker's stream and a client's
completion streams wait that long (at most `MAX_RETRY_AFTER`), not their
backoff's delay, before trying again, and log the wait at WARNING. Without
the trailer (a limit of connected workers or open streams) they keep their
backoff: see test_worker_limits.py and test_stream_limits.py.
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional, Union

import grpc
import pytest

from errand import AsyncClient, Client, Completion, ResourceExhausted, Worker, async_tool
from errand._common import Backoff

from .conftest import EVENT_TIMEOUT, ServerProcess, Watch, new_token, unique, watching

#: Calls per second per tenant: a burst of 4, then one every 250 ms.
RATE = 4
#: Backoff far shorter than any wait the server asks for here.
SHORT = Backoff(0.005, 0.01)


class Refused(grpc.RpcError):
    """A failed call as grpcio raises it: a code, words and trailers."""

    def __init__(self, code: grpc.StatusCode, trailers: tuple[tuple[str, str], ...]) -> None:
        self._code = code
        self._trailers = trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "try later"

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._trailers


def test_the_wait_is_the_servers_within_bounds() -> None:
    from errand._retry import MAX_RETRY_AFTER, pause, retry_after

    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_after(Refused(exhausted, (("retry-after-ms", "1500"),))) == 1.5
    assert retry_after(Refused(exhausted, (("retry-after-ms", "99999999"),))) == MAX_RETRY_AFTER
    for said in ("", "soon", "-5", "0", "1.5", "\u00b2", "\u0661\u0665"):
        assert retry_after(Refused(exhausted, (("retry-after-ms", said),))) is None, said
    assert retry_after(Refused(exhausted, (("retry-after", "2"),))) is None  # ms only
    assert retry_after(Refused(grpc.StatusCode.UNAVAILABLE, (("retry-after-ms", "5"),))) is None
    assert pause(Refused(exhausted, (("retry-after-ms", "700"),)), Backoff(0.01, 0.02)) == 0.7
    assert pause(Refused(exhausted, ()), Backoff(0.01, 0.02)) <= 0.02
    assert pause(None, Backoff(0.01, 0.02)) <= 0.02


class Rated:
    """A server whose tenant may make `RATE` calls a second, and its tokens."""

    def __init__(self, address: str, agent: str, worker: str) -> None:
        self.address = address
        self.agent = agent
        self.worker = worker


@pytest.fixture
def rated(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> Rated:
    tokens = tmp_path / "tokens"
    agent = new_token(tokens, "agent", "acme")
    worker = new_token(tokens, "worker", "acme")
    proc = server_factory(
        *("--listen", "127.0.0.1:0", "--store", "memory", "--tokens-file", str(tokens)),
        *("--requests-per-second-per-tenant", str(RATE)),
    )
    return Rated(proc.start(), agent, worker)


@pytest.fixture
def client_log() -> Iterator[Watch]:
    yield from watching("errand.client")


@pytest.fixture
def worker_log() -> Iterator[Watch]:
    yield from watching("errand.worker")


def spend(client: Client) -> None:
    """Spend the tenant's calls until the next one must wait most of a refill."""
    while True:
        try:
            client.list_tools()
        except ResourceExhausted as refused:
            if asked(str(refused)) >= 0.6 / RATE:
                return


def asked(text: str) -> float:
    """The wait, in seconds, the server's words ask for ("retry in N ms")."""
    found = re.search(r"retry in (\d+) ms", text)
    assert found, text
    return int(found.group(1)) / 1000


def waited(text: str) -> float:
    """The wait, in seconds, a retry's WARNING says."""
    found = re.search(r"again in (\d+\.\d+)s", text)
    assert found, text
    return float(found.group(1))


def assert_waits_as_asked(said: str) -> None:
    assert "RESOURCE_EXHAUSTED" in said, said
    wait = waited(said)
    assert abs(wait - asked(said)) <= 0.006, said  # the server's, to the log's 0.01 s
    assert wait > SHORT.maximum, said  # not the backoff's


def echo_tool() -> Any:
    @async_tool(name=unique("echo"))
    def echo(text: str) -> str:
        """Echo."""
        return text

    return echo


@pytest.fixture
def echo_worker(rated: Rated) -> Iterator[str]:
    """A worker serving an echo tool (one of the tenant's calls); yields its name."""
    echo = echo_tool()
    worker = Worker(rated.address, tools=[echo], token=rated.worker)
    worker.start(timeout=EVENT_TIMEOUT)
    yield str(echo.__errand_tool__.name)
    worker.stop()


def test_a_completion_stream_waits_as_long_as_the_server_asks(
    rated: Rated, echo_worker: str, client_log: Watch
) -> None:
    with Client(rated.address, token=rated.agent, session_id=unique("session")) as client:
        task_id = client.submit(echo_worker, text="hi").task_id
        spend(client)
        stream = client.completions(backoff=SHORT)
        got: queue.Queue[Union[Completion, BaseException]] = queue.Queue()

        def read() -> None:
            try:
                got.put(next(stream))
            except BaseException as exc:
                got.put(exc)
                client_log.ended(exc)

        threading.Thread(target=read, daemon=True).start()
        try:
            assert_waits_as_asked(client_log.warning("RESOURCE_EXHAUSTED"))
            item = got.get(timeout=EVENT_TIMEOUT)
            assert isinstance(item, Completion) and item.task_id == task_id, item
        finally:
            stream.close()


def test_a_session_event_stream_waits_as_long_as_the_server_asks_in_asyncio(
    rated: Rated, echo_worker: str, client_log: Watch
) -> None:
    session = unique("session")
    with Client(rated.address, token=rated.agent, session_id=session) as client:
        task_id = client.submit(echo_worker, text="hi").task_id
        spend(client)

    async def scenario() -> None:
        async with AsyncClient(rated.address, token=rated.agent, session_id=session) as aclient:
            stream = aclient.session_events(backoff=SHORT)
            reading = asyncio.ensure_future(stream.__anext__())

            def ended(task: asyncio.Future[Any]) -> None:
                error: Optional[BaseException] = (
                    asyncio.CancelledError() if task.cancelled() else task.exception()
                )
                if error is not None:
                    client_log.ended(error)

            reading.add_done_callback(ended)
            try:
                said = await asyncio.to_thread(client_log.warning, "RESOURCE_EXHAUSTED")
                assert_waits_as_asked(said)
                item = await asyncio.wait_for(reading, EVENT_TIMEOUT)
                assert isinstance(item, Completion) and item.task_id == task_id, item
            finally:
                reading.cancel()
                await stream.aclose()

    asyncio.run(scenario())


def test_a_worker_waits_as_long_as_the_server_asks(rated: Rated, worker_log: Watch) -> None:
    echo = echo_tool()
    worker = Worker(rated.address, tools=[echo], token=rated.worker, backoff=SHORT)
    with Client(rated.address, token=rated.agent) as client:
        spend(client)
    raised: list[BaseException] = []

    def start() -> None:
        try:
            worker.start(timeout=EVENT_TIMEOUT)  # waits until registered
        except BaseException as exc:
            raised.append(exc)
            worker_log.ended(exc)

    starting = threading.Thread(target=start, daemon=True)
    starting.start()
    try:
        assert_waits_as_asked(worker_log.warning("RESOURCE_EXHAUSTED"))
        starting.join(EVENT_TIMEOUT)
        assert not starting.is_alive() and not raised, raised
        assert worker.error is None
    finally:
        worker.stop()
