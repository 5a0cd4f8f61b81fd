"""A server that goes away after the client has reached it.

- A call then waits for it (wait_for_ready) until the client's `timeout`, and
  its error says so: the address, the wait, "may be down or restarting"
  (it was a bare "SubmitTool: DEADLINE_EXCEEDED: Deadline Exceeded").
- An `AsyncAgent` turn does not wait for the server: its PendingDigest is
  asked with a short deadline (it held every turn for the client's 30 s).
- A `--store memory` server restarted has lost the session's completions: a
  stream that reconnects with an after_seq the new server never assigned is
  refused OUT_OF_RANGE; the SDK warns and follows the session afresh instead
  of stopping for good (results stopped reaching the manager unseen).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Callable

import pytest

from errand import (
    AsyncAgent,
    AsyncClient,
    AsyncToolManager,
    Client,
    DeadlineExceeded,
    Unavailable,
)
from errand._turns import DIGEST_TIMEOUT

from .conftest import ServerProcess, unique

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
