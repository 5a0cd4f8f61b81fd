"""Client and AsyncClient against the real server: calls, results, errors."""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

import pytest

from errand import (
    AsyncClient,
    Client,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    TaskStatus,
    Worker,
    async_tool,
    errors,
)

from .conftest import EVENT_TIMEOUT, Collector, unique


def echo_tool() -> Callable[..., object]:
    @async_tool(name=unique("echo"))
    def echo(text: str, times: int = 1) -> dict[str, object]:
        """Repeat the text."""
        return {"echo": text * times}

    return echo


def test_submit_returns_at_once_and_the_result_streams(
    client: Client,
    start_worker: Callable[..., Worker],
    collect: Callable[..., Collector],
) -> None:
    echo = echo_tool()
    name = echo.__errand_tool__.name  # type: ignore[attr-defined]
    start_worker(echo)

    tools = {t.name: t for t in client.list_tools()}
    assert name in tools
    info = tools[name]
    assert info.workers >= 1
    assert info.description.startswith("Repeat the text.")
    assert len(info.description) > len("Repeat the text.")  # the async notice
    assert info.input_schema["properties"]["text"] == {"type": "string"}

    ack = client.submit(name, text="ab", times=2)
    assert ack.task_id in ack.ack
    assert ack.task.status in (TaskStatus.QUEUED, TaskStatus.RUNNING)
    assert ack.task.arguments == {"text": "ab", "times": 2}

    stream = collect(client.completions())
    (done,) = stream.take(1)
    assert done.task_id == ack.task_id
    assert done.status == TaskStatus.SUCCEEDED
    assert done.result == {"echo": "abab"}
    assert done.tool == name
    assert done.seq >= 1
    assert ack.task_id in done.text()

    task = client.get_task(ack.task_id)
    assert task.status == TaskStatus.SUCCEEDED
    assert task.result == {"echo": "abab"}
    assert task.seq == done.seq
    assert task.attempts == 1


def test_mapping_and_keywords_and_idempotency(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    echo = echo_tool()
    name = echo.__errand_tool__.name  # type: ignore[attr-defined]
    start_worker(echo)
    first = client.submit(name, {"text": "x"}, idempotency_key="k1")
    again = client.submit(name, {"text": "x"}, idempotency_key="k1")
    assert again.deduplicated and again.task_id == first.task_id
    # Without a key each submit is its own task (the SDK's own keys differ).
    one, two = client.submit(name, text="x"), client.submit(name, text="x")
    assert one.task_id != two.task_id and not two.deduplicated
    with pytest.raises(InvalidArgument, match="both"):
        client.submit(name, {"text": "x"}, text="y")


def test_bad_input_raises_the_right_exception(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    echo = echo_tool()
    name = echo.__errand_tool__.name  # type: ignore[attr-defined]
    start_worker(echo)

    with pytest.raises(NotFound) as unknown:
        client.submit(unique("no_such_tool"), text="x")
    assert unknown.value.method == "SubmitTool"
    assert isinstance(unknown.value, errors.RpcError)

    with pytest.raises(InvalidArgument):  # fails the schema: text must be a string
        client.submit(name, text=5)
    with pytest.raises(InvalidArgument):  # missing required property
        client.submit(name, times=2)
    with pytest.raises(InvalidArgument):  # session id over 128 bytes
        client.submit(name, text="x", session_id="s" * 200)
    with pytest.raises(ResourceExhausted):  # arguments over the server's limit
        client.submit(name, text="x" * 300_000)
    with pytest.raises(InvalidArgument, match="JSON"):  # refused before sending
        client.submit(name, text=object())
    with pytest.raises(NotFound):
        client.get_task("00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFound):
        client.cancel("00000000-0000-0000-0000-000000000000")

    done = client.submit(name, text="x")
    with client.completions() as stream:
        assert next(stream).task_id == done.task_id
    with pytest.raises(FailedPrecondition):
        client.cancel(done.task_id)


def test_ack_completions_releases_them(
    client: Client, start_worker: Callable[..., Worker], collect: Callable[..., Collector]
) -> None:
    echo = echo_tool()
    name = echo.__errand_tool__.name  # type: ignore[attr-defined]
    start_worker(echo)
    acks = [client.submit(name, text=str(i)) for i in range(3)]
    got = collect(client.completions()).take(3)
    assert {c.task_id for c in got} == {a.task_id for a in acks}
    assert client.ack_completions(max(c.seq for c in got)) == 3
    # A new stream from the start replays nothing that was acknowledged.
    extra = client.submit(name, text="later")
    (replayed,) = collect(client.completions(after_seq=0)).take(1)
    assert replayed.task_id == extra.task_id


def test_closing_a_stream_from_another_thread_ends_iteration(client: Client) -> None:
    stream = client.completions()
    ended = threading.Event()

    def consume() -> None:
        for _ in stream:
            pass
        ended.set()

    threading.Thread(target=consume, daemon=True).start()
    stream.close()
    assert ended.wait(EVENT_TIMEOUT)


def test_async_client(server: str, start_worker: Callable[..., Worker]) -> None:
    echo = echo_tool()
    name = echo.__errand_tool__.name  # type: ignore[attr-defined]
    start_worker(echo)

    async def scenario() -> None:
        async with AsyncClient(server, session_id=unique("session")) as client:
            assert name in {t.name for t in await client.list_tools()}
            ack = await client.submit(name, text="hi")
            stream = client.completions()
            done = await asyncio.wait_for(stream.__anext__(), EVENT_TIMEOUT)
            assert (done.task_id, done.result) == (ack.task_id, {"echo": "hi"})
            assert stream.last_seq == done.seq
            await stream.aclose()
            assert (await client.get_task(ack.task_id)).status == TaskStatus.SUCCEEDED
            with pytest.raises(NotFound):
                await client.submit(unique("missing"))
            with pytest.raises(InvalidArgument):
                await client.submit(name, text=1)
            with pytest.raises(FailedPrecondition):
                await client.cancel(ack.task_id)
            assert await client.ack_completions(done.seq) == 1

    asyncio.run(scenario())


def test_an_empty_session_id_is_refused_not_replaced(server: str) -> None:
    # README: an empty session_id is INVALID_ARGUMENT; it used to become a
    # random session silently, so the caller's completions went elsewhere.
    with pytest.raises(InvalidArgument, match="session_id is empty"):
        Client(server, session_id="")

    async def aio() -> None:
        with pytest.raises(InvalidArgument, match="session_id is empty"):
            AsyncClient(server, session_id="")

    asyncio.run(aio())

    from errand.manager import AsyncToolManager

    with pytest.raises(InvalidArgument, match="session_id is empty"):
        AsyncToolManager(target=server, session_id="")

    with Client(server, session_id="kept") as client:
        with pytest.raises(InvalidArgument, match="session_id is empty"):
            client.session_id = ""
        assert client.session_id == "kept"
    with Client(server) as client:  # None (the default): a fresh random one
        assert client.session_id


def test_an_empty_session_id_on_a_call_is_refused_not_replaced(client: Client) -> None:
    # None means the client's session; "" used to mean it too, silently.
    for call in (
        lambda: client.submit("any_tool", session_id=""),
        lambda: client.pending_digest(""),
        lambda: client.ack_completions(1, session_id=""),
        lambda: client.completions(""),
    ):
        with pytest.raises(InvalidArgument, match="session_id is empty"):
            call()


def test_an_async_client_made_outside_a_loop_serves_one_loop_after_another(server: str) -> None:
    # Its channel is made on the loop of its first call, and anew on the next
    # loop once that one has closed (a gRPC aio channel dies with its loop).
    client = AsyncClient(server, session_id=unique("session"))
    for _ in range(2):
        assert isinstance(asyncio.run(client.list_tools()), list)

    async def two_loops_at_once() -> None:
        await client.list_tools()  # the channel is this live loop's now
        other = await asyncio.to_thread(lambda: asyncio.run(client.get_task("t")))
        raise AssertionError(f"answered from a second live loop: {other}")

    with pytest.raises(RuntimeError, match="belongs to another event loop"):
        asyncio.run(two_loops_at_once())
    asyncio.run(client.close())
    with pytest.raises(errors.ClosedError):
        asyncio.run(client.list_tools())
