"""A server that goes away after the client has reached it.

- A call then waits for it (wait_for_ready) until the client's `timeout`, and
  its error says so: the address, the wait, "may be down or restarting"
  (it was a bare "SubmitTool: DEADLINE_EXCEEDED: Deadline Exceeded").
- An `AsyncAgent` turn does not wait for the server: its PendingDigest is
  asked with a short deadline (it held every turn for the client's 30 s).
- A `--store memory` server restarted has lost the session's completions: a
  stream that reconnects with an after_seq the new server never assigned is
  refused OUT_OF_RANGE; the SDK warns and follows the session afresh instead
  of stopping for good (results stopped reaching the manager unseen). Only a
  reconnect before the new server has assigned that seq can tell: the server
  says nothing of its restart (left to the server: an epoch on the stream).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
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
    DeadlineExceeded,
    Unavailable,
    Worker,
    async_tool,
)
from errand._common import Backoff
from errand._turns import DIGEST_TIMEOUT

from .conftest import EVENT_TIMEOUT, Collector, ServerProcess, free_port, unique

DEADLINE = 1.0


@pytest.fixture
def gone(server_factory: Callable[..., ServerProcess]) -> Iterator[ServerProcess]:
    """A memory-store server of the test's own, to kill."""
    proc = server_factory("--listen", "127.0.0.1:0", "--store", "memory")
    proc.start()
    yield proc


def test_a_call_to_a_server_gone_says_what_happened(gone: ServerProcess) -> None:
    with Client(gone.address, session_id=unique("s"), timeout=DEADLINE) as client:
        client.list_tools()
        gone.kill()
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            client.submit("anything", x=1)
        assert time.monotonic() - started < DEADLINE + 5
    text = str(caught.value)
    assert f"the errand server at {gone.address} did not answer within 1s" in text
    assert "may be down or restarting" in text
    assert "idempotency_key" in text  # a submit given up on may have been made
    assert "timeout=" in text  # the knob


def test_a_call_that_does_not_wait_says_unreachable(gone: ServerProcess) -> None:
    with Client(gone.address, session_id=unique("s"), wait_for_ready=False) as client:
        client.list_tools()
        gone.kill()
        with pytest.raises(Unavailable) as caught:
            client.get_task("t-1")
    assert f"the errand server at {gone.address} could not be reached" in str(caught.value)


def test_the_async_client_says_the_same(gone: ServerProcess) -> None:
    async def main() -> str:
        async with AsyncClient(gone.address, session_id=unique("s"), timeout=DEADLINE) as client:
            await client.list_tools()
            gone.kill()
            with pytest.raises(DeadlineExceeded) as caught:
                await client.pending_digest()
            return str(caught.value)

    text = asyncio.run(main())
    assert f"{gone.address} did not answer within 1s" in text
    assert "idempotency_key" not in text  # only a submit may have been made


def test_a_call_may_wait_less_than_the_clients_timeout(
    gone: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    with Client(gone.address, session_id=unique("s"), timeout=60) as client:
        client.list_tools()
        gone.kill()
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"within 0\.5s"):
            client.pending_digest(timeout=0.5)
        assert time.monotonic() - started < 5
        with pytest.raises(ValueError, match="timeout"):
            client.pending_digest(timeout=0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class Chat:
    """An agent that answers at once and keeps what it was sent."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def send(self, message: str) -> str:
        self.seen.append(message)
        return "ok"


UNREACHABLE = "could not reach the errand server"


def test_a_chat_turn_does_not_wait_for_a_server_gone_manager(gone: ServerProcess) -> None:
    """The trial: with the server down every turn waited 30 s (the digest's
    deadline was the client's); now at most DIGEST_TIMEOUT, and the model is
    told why it has no digest."""
    manager = AsyncToolManager(max_workers=1, target=gone.address, session_id=unique("s"))
    chat = Chat()
    agent = AsyncAgent(chat, manager)
    try:
        agent.send("hello")
        gone.kill()
        started = time.monotonic()
        assert agent.send("just chatting, no tools") == "ok"
        assert time.monotonic() - started < DIGEST_TIMEOUT + 3
    finally:
        agent.close()
        manager.stop()
    assert UNREACHABLE not in chat.seen[0]
    assert UNREACHABLE in chat.seen[1] and chat.seen[1].endswith("just chatting, no tools")


def test_a_chat_turn_does_not_wait_for_a_server_gone_client(gone: ServerProcess) -> None:
    chat = Chat()

    async def main() -> float:
        client = AsyncClient(gone.address, session_id=unique("s"))
        async with client, AsyncAgent(chat, client) as agent:
            await agent.send("hello")
            gone.kill()
            started = time.monotonic()
            await agent.send("just chatting")
            return time.monotonic() - started

    assert asyncio.run(main()) < DIGEST_TIMEOUT + 3
    assert UNREACHABLE in chat.seen[1]


class Heard(logging.Handler):
    """Sets `event` when a record at WARNING or above contains `words`."""

    def __init__(self, words: str) -> None:
        super().__init__(logging.WARNING)
        self.words = words
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.event.set()


LOST = "lost the session's completions"


def restarted(proc: ServerProcess, server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """`proc` killed and started again on its port: a --store memory server, empty."""
    proc.kill()
    again = server_factory(*proc.args[1:])
    again.start()
    return again


def test_results_reach_the_manager_after_a_memory_server_restarts(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """The trial: after the restart one error, "after_seq 1 is beyond session
    ...'s last seq, 0", and no result ever reached the manager again."""
    proc = server_factory("--listen", f"127.0.0.1:{free_port()}", "--store", "memory")
    proc.start()
    heard = Heard(LOST)
    logging.getLogger("errand").addHandler(heard)
    manager = AsyncToolManager(
        max_workers=1, target=proc.address, session_id=unique("s"), backoff=Backoff(0.05, 0.3)
    )
    results: queue.Queue[str] = queue.Queue()
    manager.add_done_callback(lambda r: results.put(r.result))

    @async_tool(manager)
    def job(tag: str) -> str:
        return "done " + tag

    try:
        job(tag="one")
        assert results.get(timeout=EVENT_TIMEOUT) == "done one"
        proc = restarted(proc, server_factory)
        assert manager.wait_registered(EVENT_TIMEOUT, count=2)
        assert heard.event.wait(EVENT_TIMEOUT), "the stream never said the server lost its seqs"
        job(tag="two")
        assert results.get(timeout=EVENT_TIMEOUT) == "done two"
        job(tag="three")  # and acknowledged on the new server, as before the restart
        assert results.get(timeout=EVENT_TIMEOUT) == "done three"
        assert manager.error is None
    finally:
        logging.getLogger("errand").removeHandler(heard)
        manager.stop()


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_client_streams_follow_a_memory_server_restart(
    kind: str,
    server_factory: Callable[..., ServerProcess],
    start_worker: Callable[..., Worker],
    collect: Callable[..., Collector],
) -> None:
    """A stream being read while the server restarts (a stream not read then
    reconnects at its next read: if the new server has assigned its seq by
    then, nothing tells the SDK, see the module doc)."""
    proc = server_factory("--listen", f"127.0.0.1:{free_port()}", "--store", "memory")
    proc.start()
    name = unique("echo")

    @async_tool(name=name)
    def echo(n: int) -> int:
        return n

    worker = start_worker(echo, target=proc.address, backoff=Backoff(0.05, 0.3))
    heard = Heard(LOST)
    logging.getLogger("errand").addHandler(heard)
    session = unique("s")
    try:
        with Client(proc.address, session_id=session) as client:
            if kind == "sync":
                seen = collect(client.completions(backoff=Backoff(0.05, 0.3)))
                client.submit(name, n=1)
                assert seen.take(1)[0].result == 1
                proc = restarted(proc, server_factory)
                assert worker.wait_registered(EVENT_TIMEOUT, count=2)
                assert heard.event.wait(EVENT_TIMEOUT)
                client.submit(name, n=2)
                (got,) = seen.take(1)
            else:

                async def main() -> Any:
                    nonlocal proc
                    async with AsyncClient(proc.address, session_id=session) as aclient:
                        astream = aclient.completions(backoff=Backoff(0.05, 0.3))
                        await aclient.submit(name, n=1)
                        first = await asyncio.wait_for(astream.__anext__(), EVENT_TIMEOUT)
                        assert first.result == 1
                        reading = asyncio.ensure_future(astream.__anext__())
                        proc = await asyncio.to_thread(restarted, proc, server_factory)
                        assert await asyncio.to_thread(
                            worker.wait_registered, EVENT_TIMEOUT, count=2
                        )
                        assert await asyncio.to_thread(heard.event.wait, EVENT_TIMEOUT)
                        await aclient.submit(name, n=2)
                        second = await asyncio.wait_for(reading, EVENT_TIMEOUT)
                        await astream.aclose()
                        return second

                got = asyncio.run(main())
        assert got.result == 2 and got.seq == 1  # the new server's first seq
    finally:
        logging.getLogger("errand").removeHandler(heard)


def test_a_frozen_server_is_noticed_by_the_keepalive_ping(
    gone: ServerProcess, start_worker: Callable[..., Worker]
) -> None:
    """A server that stops answering while its connections stay open
    (SIGSTOP: the kernel still acknowledges TCP) is noticed by the keepalive
    ping going unanswered: the stream says it broke within the ping interval
    and its timeout (20 s + 10 s), not after gRPC's default ping timeout of a
    minute on top."""
    broke = threading.Event()

    class Broke(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "broke" in record.getMessage():
                broke.set()

    handler = Broke()
    logging.getLogger("errand").addHandler(handler)
    assert gone.proc is not None
    pid = gone.proc.pid
    try:

        def ping() -> str:
            return "pong"

        start_worker(ping, target=gone.address)
        with Client(gone.address, session_id=unique("s")) as client:
            collector = Collector(client.completions())
            client.submit("ping")
            collector.take(1)  # the stream is open: what follows is the freeze
            os.kill(pid, signal.SIGSTOP)
            try:
                assert broke.wait(45), "the frozen server went unnoticed for 45 s"
            finally:
                os.kill(pid, signal.SIGCONT)
    finally:
        logging.getLogger("errand").removeHandler(handler)


def test_a_draining_servers_refusal_is_its_own_words(
    gone: ServerProcess, start_worker: Callable[..., Worker]
) -> None:
    """UNAVAILABLE the server itself sent (a draining server's refusal) is its
    answer, not "could not be reached" (review item 3: every UNAVAILABLE on a
    connected client was rewritten so, and a first call's into "no errand
    server at ADDR"); the model is told the server's words."""
    from errand.integrations._tools import not_made

    running = threading.Event()
    gate = threading.Event()

    def hold() -> str:
        running.set()
        gate.wait(EVENT_TIMEOUT)
        return "held"

    start_worker(hold, target=gone.address)
    try:
        with Client(gone.address, session_id=unique("s")) as client:
            client.submit("hold")
            assert running.wait(EVENT_TIMEOUT)
            assert gone.proc is not None
            gone.proc.send_signal(signal.SIGTERM)  # drains: `hold` may finish
            deadline = time.monotonic() + EVENT_TIMEOUT
            while "draining running tasks" not in gone.log_path.read_text():
                assert time.monotonic() < deadline, "the server never began to drain"
                time.sleep(0.05)
            with pytest.raises(Unavailable) as connected:
                client.submit("hold")
        first = Client(gone.address, session_id=unique("s"))
        with first, pytest.raises(Unavailable) as fresh:
            first.submit("hold")

        async def main() -> Unavailable:
            async with AsyncClient(gone.address, session_id=unique("s")) as aclient:
                await aclient.list_tools()
                with pytest.raises(Unavailable) as caught:
                    await aclient.submit("hold")
                return caught.value

        aio = asyncio.run(main())
    finally:
        gate.set()
    said = "the server is shutting down: submit again once it is back"
    for exc in (connected.value, fresh.value, aio):
        assert exc.message == said, exc.message
    text = not_made("hold", connected.value)
    assert said in text and "could not be reached" not in text, text
