"""Reconnection: nothing lost, nothing repeated.

- A network blip (a proxy cuts the connection) mid-stream: the completion
  iterators reopen the stream after their last seq; completions that happened
  meanwhile are replayed.
- The server killed (SIGKILL) and restarted on the same port and data dir
  (the durable SQLite store): the iterators resume and the worker registers
  again; a task that was running is dispatched again and completes once.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Callable

from errand import (
    AsyncAgent,
    AsyncClient,
    Client,
    Completion,
    TaskStatus,
    Worker,
    async_tool,
)
from errand._common import Backoff

from .conftest import (
    EVENT_TIMEOUT,
    Collector,
    CuttableProxy,
    ServerProcess,
    free_port,
    unique,
)


def test_network_blip_mid_stream_loses_and_repeats_nothing(
    client: Client,
    proxy: CuttableProxy,
    start_worker: Callable[..., Worker],
    collect: Callable[..., Collector],
) -> None:
    name = unique("cube")

    @async_tool(name=name)
    def cube(n: int) -> int:
        return n**3

    start_worker(cube)  # straight to the server: tasks finish while the agent is cut off
    with Client(proxy.address, session_id=client.session_id) as through_proxy:
        stream = through_proxy.completions(backoff=Backoff(0.05, 0.3))
        seen = collect(stream)
        submitted = [through_proxy.submit(name, n=n).task_id for n in range(3)]
        first = seen.take(3)

        proxy.cut()  # the collector is blocked in next() on the open stream
        submitted += [client.submit(name, n=n).task_id for n in range(3, 6)]
        with client.completions(after_seq=first[-1].seq) as watch:
            [next(watch) for _ in range(3)]  # all three finished while cut off
        proxy.restore()
        second = seen.take(3)

        proxy.cut()
        proxy.restore()
        submitted += [through_proxy.submit(name, n=n).task_id for n in range(6, 9)]
        third = seen.take(3)

    got = first + second + third
    seqs = [c.seq for c in got]
    assert seqs == list(range(seqs[0], seqs[0] + 9))  # nothing lost, nothing twice
    assert sorted(c.task_id for c in got) == sorted(submitted)
    assert sorted(c.result for c in got) == [n**3 for n in range(9)]
    assert stream.reconnects >= 1
    assert proxy.connections >= 2
    assert seen.items.empty()


def test_async_stream_survives_a_network_blip(
    client: Client, proxy: CuttableProxy, start_worker: Callable[..., Worker]
) -> None:
    name = unique("negate")

    @async_tool(name=name)
    def negate(n: int) -> int:
        return -n

    start_worker(negate)

    async def scenario() -> None:
        async with AsyncClient(proxy.address, session_id=client.session_id) as aclient:
            stream = aclient.completions(backoff=Backoff(0.05, 0.3))
            a = await aclient.submit(name, n=1)
            first = await asyncio.wait_for(stream.__anext__(), EVENT_TIMEOUT)
            proxy.cut()
            b = await asyncio.to_thread(client.submit, name, n=2)
            proxy.restore()
            second = await asyncio.wait_for(stream.__anext__(), EVENT_TIMEOUT)
            await stream.aclose()
            assert [first.task_id, second.task_id] == [a.task_id, b.task_id]
            assert second.seq == first.seq + 1
            assert stream.reconnects >= 1

    asyncio.run(scenario())


def durable_server(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> tuple[ServerProcess, str]:
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    proc = server_factory("--listen", f"127.0.0.1:{port}", "--data-dir", str(data))
    return proc, proc.start()


def restart(server_factory: Callable[..., ServerProcess], old: ServerProcess) -> ServerProcess:
    old.kill()
    new = server_factory(*old.args[1:])
    new.start()
    return new


def test_stream_and_worker_survive_kill_and_restart(
    server_factory: Callable[..., ServerProcess],
    tmp_path: Path,
    collect: Callable[..., Collector],
) -> None:
    proc, address = durable_server(server_factory, tmp_path)

    @async_tool(name="square")
    def square(n: int) -> int:
        return n * n

    worker = Worker(address, tools=[square], backoff=Backoff(0.05, 0.5))
    worker.start(timeout=EVENT_TIMEOUT)
    try:
        with Client(address, session_id=unique("session")) as client:
            stream = client.completions(backoff=Backoff(0.05, 0.5))
            seen = collect(stream)
            submitted = [client.submit("square", n=n).task_id for n in range(3)]
            first = seen.take(3)

            # The collector thread is blocked in next() on the open stream: kill now.
            proc = restart(server_factory, proc)
            assert worker.wait_registered(EVENT_TIMEOUT, count=2), "worker did not re-register"
            submitted += [client.submit("square", n=n).task_id for n in range(3, 6)]
            second = seen.take(3)

            # A stream that is not being read while the server dies and its
            # completions happen still gets them all after reconnecting.
            proc = restart(server_factory, proc)
            assert worker.wait_registered(EVENT_TIMEOUT, count=3)
            submitted += [client.submit("square", n=n).task_id for n in range(6, 9)]
            with client.completions(after_seq=6) as watch:  # wait, by event, for all three
                [next(watch) for _ in range(3)]
            third = seen.take(3)

            got = first + second + third
            assert [c.seq for c in got] == list(range(1, 10))  # nothing lost, nothing twice
            assert sorted(c.task_id for c in got) == sorted(submitted)
            assert sorted(c.result for c in got) == [n * n for n in range(9)]
            assert all(c.status == TaskStatus.SUCCEEDED for c in got)
            assert stream.reconnects >= 2
            assert seen.items.empty()
    finally:
        worker.stop()


def test_a_task_running_when_the_server_dies_completes_after_restart(
    server_factory: Callable[..., ServerProcess],
    tmp_path: Path,
    collect: Callable[..., Collector],
) -> None:
    proc, address = durable_server(server_factory, tmp_path)
    attempts: list[int] = []
    first_attempt_running = threading.Event()

    @async_tool(name="resumable")
    def resumable() -> str:
        from errand import current_task

        task = current_task()
        assert task is not None
        attempts.append(task.attempt)
        if len(attempts) == 1:
            first_attempt_running.set()
            task.cancelled.wait(EVENT_TIMEOUT)  # the server dies under us
            return "first"
        return "second"

    worker = Worker(address, tools=[resumable], backoff=Backoff(0.05, 0.5))
    worker.start(timeout=EVENT_TIMEOUT)
    try:
        with Client(address, session_id=unique("session")) as client:
            seen = collect(client.completions(backoff=Backoff(0.05, 0.5)))
            ack = client.submit("resumable")
            assert first_attempt_running.wait(EVENT_TIMEOUT)
            proc = restart(server_factory, proc)
            (done,) = seen.take(1)
            assert done.task_id == ack.task_id
            assert done.status == TaskStatus.SUCCEEDED
            assert done.result == "second"
            assert attempts[-1] > 1
    finally:
        worker.stop()


def test_async_agent_survives_kill_and_restart(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    proc, address = durable_server(server_factory, tmp_path)

    @async_tool(name="double")
    def double(n: int) -> int:
        return 2 * n

    worker = Worker(address, tools=[double], backoff=Backoff(0.05, 0.5))
    worker.start(timeout=EVENT_TIMEOUT)

    class Agent:
        def __init__(self) -> None:
            self.received: asyncio.Queue[str] = asyncio.Queue()

        async def send(self, message: str) -> None:
            await self.received.put(message)

    async def scenario() -> None:
        nonlocal proc
        async with AsyncClient(address, session_id=unique("session")) as client:
            agent = Agent()
            delivered: list[Completion] = []
            async with AsyncAgent(
                agent,
                client,
                on_status=lambda s, cs: delivered.extend(cs) if s == "delivered" else None,
            ) as async_agent:
                a = await async_agent.submit("double", n=1)
                assert a.task_id in await asyncio.wait_for(agent.received.get(), EVENT_TIMEOUT)
                proc = await asyncio.to_thread(restart, server_factory, proc)
                assert await asyncio.to_thread(worker.wait_registered, EVENT_TIMEOUT, count=2)
                b = await async_agent.submit("double", n=2)
                assert b.task_id in await asyncio.wait_for(agent.received.get(), EVENT_TIMEOUT)
                assert [c.task_id for c in delivered] == [a.task_id, b.task_id]
                assert [c.result for c in delivered] == [2, 4]
                assert agent.received.empty()

    try:
        asyncio.run(scenario())
    finally:
        worker.stop()


def test_worker_reregisters_after_a_memory_server_restart(
    server_factory: Callable[..., ServerProcess], collect: Callable[..., Collector]
) -> None:
    """Even without a durable store, a worker comes back by itself after a restart."""
    port = free_port()
    proc = server_factory("--listen", f"127.0.0.1:{port}", "--store", "memory")
    address = proc.start()

    @async_tool(name="halve")
    def halve(n: int) -> float:
        return n / 2

    worker = Worker(address, tools=[halve], backoff=Backoff(0.05, 0.5))
    worker.start(timeout=EVENT_TIMEOUT)
    try:
        proc = restart(server_factory, proc)
        assert worker.wait_registered(EVENT_TIMEOUT, count=2), "worker did not re-register"
        with Client(address, session_id=unique("session")) as client:
            assert [t.name for t in client.list_tools()] == ["halve"]
            ack = client.submit("halve", n=3)
            (done,) = collect(client.completions()).take(1)
            assert (done.task_id, done.result) == (ack.task_id, 1.5)
    finally:
        worker.stop()
