"""Who acknowledges a completion, and when: only once its owner has taken it over.

The rule (see `errand.manager` and `errand._turns`): a completion is
acknowledged (AckCompletions, after which the server may drop it) only once
the consumer that owns it has delivered it, the agent when one is attached
(an `AsyncAgent` or a `SyncAgent`, on a manager or on a client), the
manager's completion callbacks otherwise. A result still queued in an agent,
or held by one that never started, is not acknowledged: closing the agent
leaves it on the server, and a new stream of the session replays it.

Each test ends by stopping what it started, which waits for any
AckCompletions in flight, and then asks the server what it kept.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Optional

from errand import (
    AsyncAgent,
    AsyncClient,
    AsyncTaskResult,
    AsyncToolManager,
    Client,
    SyncAgent,
    Worker,
    async_tool,
)
from errand.tool import tool_def

from .conftest import EVENT_TIMEOUT, unique


class Acks:
    """Records the manager's AckCompletions calls (wraps its client's method),
    and what the agent had been sent when each one went out."""

    def __init__(self, manager: AsyncToolManager, sent: Optional[list[str]] = None) -> None:
        self.seqs: list[int] = []
        self.sent_at_ack: list[int] = []
        self.cond = threading.Condition()
        client = manager.client
        real = client.ack_completions

        def ack_completions(up_to_seq: int, *, session_id: Optional[str] = None) -> int:
            with self.cond:
                self.sent_at_ack.append(len(sent) if sent is not None else -1)
            answer = real(up_to_seq, session_id=session_id)
            with self.cond:
                self.seqs.append(up_to_seq)
                self.cond.notify_all()
            return answer

        client.ack_completions = ack_completions  # type: ignore[method-assign]

    def wait_for(self, seq: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: seq in self.seqs, EVENT_TIMEOUT), self.seqs


class Taken:
    """A manager callback registered after the agent's: the manager calls its
    callbacks in order, so when this one has seen a result, the agent has had it."""

    def __init__(self) -> None:
        self.results: list[AsyncTaskResult] = []
        self.cond = threading.Condition()

    def __call__(self, result: AsyncTaskResult) -> None:
        with self.cond:
            self.results.append(result)
            self.cond.notify_all()

    def wait_for(self, count: int) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.results) >= count, EVENT_TIMEOUT)
            assert ok, f"{len(self.results)} of {count} results reached the callbacks"


class Queued:
    """`on_status` that lets a thread wait for "queued" and "delivered" events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[str]]] = []
        self.cond = threading.Condition()

    def __call__(self, status: str, items: list[Any]) -> None:
        with self.cond:
            self.events.append((status, [getattr(c, "task_id", "") for c in items]))
            self.cond.notify_all()

    def wait_for(self, status: str, count: int) -> None:
        with self.cond:
            ok = self.cond.wait_for(
                lambda: sum(len(ids) for s, ids in self.events if s == status) >= count,
                EVENT_TIMEOUT,
            )
            assert ok, self.events


class Idle:
    """The seed's agent: blocking `send`, always idle."""

    def __init__(self) -> None:
        self.got: list[str] = []

    def is_idle(self) -> bool:
        return True

    def send(self, message: str) -> str:
        self.got.append(message)
        return "ok"


class Busy(Idle):
    """Busy for reasons of its own (streaming to its user, say) until told."""

    def __init__(self) -> None:
        super().__init__()
        self.idle = False

    def is_idle(self) -> bool:
        return self.idle


def kept_by_server(address: str, session_id: str, count: int) -> tuple[int, list[str]]:
    """The session's acked seq, and the task IDs a new stream replays (the
    first `count`: the test knows how many it expects)."""
    with Client(address, session_id=session_id) as client:
        acked = client.pending_digest().acked_seq
        replayed: list[str] = []
        if count:
            with client.completions() as stream:
                for completion in stream:
                    replayed.append(completion.task_id)
                    if len(replayed) == count:
                        break
        return acked, replayed


def echo_manager(**kw: Any) -> tuple[AsyncToolManager, Callable[..., str]]:
    manager = AsyncToolManager(max_workers=2, session_id=unique("session"), **kw)

    @async_tool(manager, name=unique("lookup"))
    def lookup(term: str) -> str:
        """Look a term up."""
        return f"def of {term}"

    return manager, lookup


def serve_echo(start_worker: Callable[..., Worker]) -> str:
    """Starts a worker serving a new echo tool; its name."""

    @async_tool(name=unique("echo"))
    def echo(x: int) -> int:
        return x

    start_worker(echo)
    return tool_def(echo).name


def task_id_of(ack: str) -> str:
    assert ack.startswith("Task "), ack
    return ack.split()[1]


def test_an_agent_that_never_started_holds_its_results_and_they_are_not_acked(
    server: str,
) -> None:
    manager, lookup = echo_manager()
    acks = Acks(manager)
    model = Idle()
    agent = AsyncAgent(model, manager)  # the seed's line; never started
    taken = Taken()
    manager.add_done_callback(taken)
    try:
        task = task_id_of(lookup(term="a"))
        taken.wait_for(1)
        # The agent has it, queued for its start: not lost, not delivered.
        assert [c.task_id for c in agent.queue] == [task]
        assert agent.state == "queued" and model.got == []
    finally:
        agent.close()
        manager.stop()
    assert acks.seqs == []
    assert kept_by_server(server, manager.session_id, 1) == (0, [task])


def test_an_agent_started_late_delivers_what_it_held_and_only_then_it_is_acked(
    server: str,
) -> None:
    manager, lookup = echo_manager()
    model = Idle()
    acks = Acks(manager, model.got)
    agent = AsyncAgent(model, manager)
    taken = Taken()
    manager.add_done_callback(taken)
    try:
        task = task_id_of(lookup(term="a"))
        taken.wait_for(1)
        assert acks.seqs == []
        agent.start()
        acks.wait_for(1)
        assert len(model.got) == 1 and task in model.got[0]
        assert acks.sent_at_ack == [1]  # the model had it before the ack went out
        assert agent.queue == []
    finally:
        agent.close()
        manager.stop()
    assert kept_by_server(server, manager.session_id, 0)[0] == 1


def test_results_queued_in_a_busy_agent_are_not_acked_and_survive_its_close(
    server: str,
) -> None:
    manager, lookup = echo_manager()
    acks = Acks(manager)
    statuses = Queued()
    model = Busy()
    agent = AsyncAgent(model, manager, on_status=statuses)
    agent.start()
    try:
        tasks = [task_id_of(lookup(term=t)) for t in "ab"]
        statuses.wait_for("queued", 2)
        assert sorted(c.task_id for c in agent.queue) == sorted(tasks)
        assert model.got == []
    finally:
        agent.close()
        manager.stop()
    assert acks.seqs == []
    acked, replayed = kept_by_server(server, manager.session_id, 2)
    assert acked == 0 and sorted(replayed) == sorted(tasks)


def test_what_a_closed_agent_held_goes_to_the_next_agent_and_acks_go_on(server: str) -> None:
    manager, lookup = echo_manager()
    first_model = Busy()
    statuses = Queued()
    first = AsyncAgent(first_model, manager, on_status=statuses)
    first.start()
    second_model = Idle()
    acks = Acks(manager, second_model.got)
    try:
        held = task_id_of(lookup(term="a"))
        statuses.wait_for("queued", 1)
        first.close()  # closed with the result undelivered: not acked, not lost
        assert acks.seqs == []
        second = AsyncAgent(second_model, manager)
        second.start()
        try:
            acks.wait_for(1)  # the second agent was given it, and delivered it
            assert any(held in m for m in second_model.got), second_model.got
            later = task_id_of(lookup(term="b"))
            acks.wait_for(2)  # and the acks go on past it
            assert any(later in m for m in second_model.got), second_model.got
        finally:
            second.close()
    finally:
        manager.stop()
    assert kept_by_server(server, manager.session_id, 0)[0] == 2


def test_a_delivered_result_is_acked_after_the_model_has_it(server: str) -> None:
    manager, lookup = echo_manager()
    model = Idle()
    acks = Acks(manager, model.got)
    agent = AsyncAgent(model, manager)
    agent.start()
    try:
        task = task_id_of(lookup(term="a"))
        acks.wait_for(1)
        assert acks.sent_at_ack == [1] and task in model.got[0]
    finally:
        agent.close()
        manager.stop()
    assert kept_by_server(server, manager.session_id, 0)[0] == 1


def test_an_async_agent_on_a_manager_in_asyncio_code_acks_only_what_it_delivered(
    server: str,
) -> None:
    manager, lookup = echo_manager()
    acks = Acks(manager)
    statuses = Queued()

    class Model:
        def __init__(self) -> None:
            self.idle = False

        def is_idle(self) -> bool:
            return self.idle

        async def send(self, message: str) -> str:
            return "ok"

    model = Model()

    async def scenario() -> list[str]:
        async with AsyncAgent(model, manager, on_status=statuses) as agent:
            tasks = [task_id_of(await asyncio.to_thread(lookup, term=t)) for t in "ab"]
            await asyncio.to_thread(statuses.wait_for, "queued", 2)
            assert len(agent.queue) == 2
        return tasks

    try:
        tasks = asyncio.run(scenario())
    finally:
        manager.stop()
    assert acks.seqs == []
    acked, replayed = kept_by_server(server, manager.session_id, 2)
    assert acked == 0 and sorted(replayed) == sorted(tasks)


def test_plain_callbacks_still_ack_once_they_return(server: str) -> None:
    manager, lookup = echo_manager()
    acks = Acks(manager)
    taken = Taken()
    manager.add_done_callback(taken)
    try:
        task_id_of(lookup(term="a"))
        acks.wait_for(1)
        assert len(taken.results) == 1
    finally:
        manager.stop()


def test_a_manager_with_ack_off_never_acks_even_what_an_agent_delivered(server: str) -> None:
    manager, lookup = echo_manager(ack=False)
    statuses = Queued()
    model = Idle()
    agent = AsyncAgent(model, manager, on_status=statuses)
    agent.start()
    try:
        task = task_id_of(lookup(term="a"))
        statuses.wait_for("delivered", 1)
    finally:
        agent.close()
        manager.stop()
    assert kept_by_server(server, manager.session_id, 1) == (0, [task])


def test_a_sync_agent_on_a_manager_keeps_what_it_has_not_delivered(server: str) -> None:
    manager, lookup = echo_manager()
    acks = Acks(manager)
    statuses = Queued()
    sync = SyncAgent(Busy(), manager, on_status=statuses)
    try:
        tasks = [task_id_of(lookup(term=t)) for t in "ab"]
        statuses.wait_for("queued", 2)
        assert sorted(c.task_id for c in sync.pending) == sorted(tasks)
    finally:
        sync.close()
        manager.stop()
    assert acks.seqs == []
    acked, replayed = kept_by_server(server, manager.session_id, 2)
    assert acked == 0 and sorted(replayed) == sorted(tasks)


def test_a_sync_agent_on_a_client_keeps_what_it_has_not_delivered(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    echo = serve_echo(start_worker)
    session = unique("session")
    statuses = Queued()
    with Client(server, session_id=session) as client:
        sync = SyncAgent(Busy(), client, on_status=statuses)
        try:
            tasks = [client.submit(echo, x=i).task_id for i in range(2)]
            statuses.wait_for("queued", 2)
        finally:
            sync.close()
    acked, replayed = kept_by_server(server, session, 2)
    assert acked == 0 and sorted(replayed) == sorted(tasks)


def test_an_async_agent_on_a_client_acks_after_delivering(
    server: str, start_worker: Callable[..., Worker]
) -> None:
    echo = serve_echo(start_worker)
    session = unique("session")
    sent: list[str] = []

    class Recording(AsyncClient):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.acked = asyncio.Event()
            self.sent_at_ack: list[int] = []

        async def ack_completions(self, up_to_seq: int, *, session_id: Optional[str] = None) -> int:
            self.sent_at_ack.append(len(sent))
            answer = await super().ack_completions(up_to_seq, session_id=session_id)
            self.acked.set()
            return answer

    class Model:
        async def send(self, message: str) -> str:
            sent.append(message)
            return "ok"

    async def scenario() -> None:
        async with Recording(server, session_id=session) as client:
            async with AsyncAgent(Model(), client):
                await client.submit(echo, x=1)
                await asyncio.wait_for(client.acked.wait(), EVENT_TIMEOUT)
            assert client.sent_at_ack == [1]

    asyncio.run(scenario())
